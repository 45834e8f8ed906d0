//! Function code in and out: turns a request's `ZipFile` into a checked zip before anything is
//! written, and serves a stored zip at the `Code.Location` that `GetFunction` points to.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use nimbus_core::{CodeSha256, Error, limits};

use crate::error::ApiError;
use crate::extract::PathParam;
use crate::shapes::FunctionCode;
use crate::state::{AppState, GatewayConfig};

/// Standard base64; SDKs pad, but a hand-written request may not, and both mean the same.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A zip that opened, stays inside its folder and unpacks within Lambda's limit.
#[derive(Debug)]
pub(crate) struct CheckedZip {
    pub(crate) sha: CodeSha256,
    pub(crate) zip: Bytes,
}

impl CheckedZip {
    pub(crate) fn size(&self) -> u64 {
        self.zip.len() as u64
    }
}

/// The base64 `ZipFile` of a code member; code from S3 or a container image is refused, as
/// Nimbus stores code itself.
pub(crate) fn zip_file(code: FunctionCode) -> Result<String, Error> {
    let elsewhere = [
        ("S3Bucket", code.s3_bucket.is_some()),
        ("S3Key", code.s3_key.is_some()),
        ("S3ObjectVersion", code.s3_object_version.is_some()),
        ("ImageUri", code.image_uri.is_some()),
    ];
    if let Some((member, _)) = elsewhere.iter().find(|(_, given)| *given) {
        return Err(Error::InvalidParameterValue(format!(
            "Nimbus accepts code only as ZipFile (a base64-encoded zip); {member} is not \
             supported"
        )));
    }
    code.zip_file.ok_or_else(|| {
        Error::InvalidParameterValue(
            "ZipFile is required: the function's code as a base64-encoded zip".to_owned(),
        )
    })
}

/// Decodes and checks a `ZipFile`. Runs on the blocking pool: a 50 MB zip is fully
/// decompressed to check it, which would stall the reactor.
pub(crate) async fn check(zip_base64: String) -> Result<CheckedZip, Error> {
    tokio::task::spawn_blocking(move || check_blocking(zip_base64.as_bytes()))
        .await
        .map_err(|e| Error::Service(format!("zip check task failed: {e}")))?
}

fn check_blocking(zip_base64: &[u8]) -> Result<CheckedZip, Error> {
    let zip = BASE64
        .decode(zip_base64)
        .map_err(|e| Error::InvalidParameterValue(format!("ZipFile is not valid base64: {e}")))?;
    if zip.len() > limits::MAX_ZIPPED_CODE_BYTES {
        return Err(Error::RequestTooLarge(format!(
            "Zipped code must be at most {} bytes",
            limits::MAX_ZIPPED_CODE_BYTES
        )));
    }
    nimbus_core::code::inspect_zip(&zip).map_err(upload_error)?;
    Ok(CheckedZip {
        sha: CodeSha256::of(&zip),
        zip: Bytes::from(zip),
    })
}

/// A zip refused at upload is Lambda's `InvalidParameterValueException`: `CreateFunction` and
/// `UpdateFunctionCode` model no `InvalidZipFileException`, which is an `Invoke` error, and
/// SDKs raise only what an operation models.
fn upload_error(error: Error) -> Error {
    match error {
        Error::InvalidZipFile(message) => Error::InvalidParameterValue(message),
        other => other,
    }
}

/// Where `GetFunction` tells a caller to download the code: this gateway, as the caller
/// reached it. With keys configured, a presigned URL that a plain `GET` can fetch for 10
/// minutes, as Lambda's is.
pub(crate) fn location(
    config: &GatewayConfig,
    headers: &HeaderMap,
    uri: &Uri,
    sha: &CodeSha256,
) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    // Behind a TLS-terminating proxy the caller used https.
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    let path = format!("/nimbus/v1/code/{}", sha.to_hex());
    match crate::auth::presigned_code_query(config, &path, host) {
        Some(query) => format!("{scheme}://{host}{path}?{query}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// `GET /nimbus/v1/code/{CodeSha256}`: the zip stored under that hash (hex).
pub(crate) async fn download(
    State(state): State<AppState>,
    PathParam(sha): PathParam,
) -> Result<Response, ApiError> {
    let sha = CodeSha256::from_hex(&sha)?;
    let zip = state
        .store()
        .get_code(&sha)
        .await?
        .ok_or_else(|| Error::ResourceNotFound(format!("Code not found: {}", sha.to_hex())))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/zip"),
        )],
        Body::from(zip),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write as _};

    use super::*;

    fn zip_of(name: &str) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(b"x").unwrap();
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn accepts_padded_and_unpadded_base64() {
        let zip = zip_of("index.py");
        let padded = base64::engine::general_purpose::STANDARD.encode(&zip);
        let unpadded = padded.trim_end_matches('=');
        let a = check_blocking(padded.as_bytes()).unwrap();
        let b = check_blocking(unpadded.as_bytes()).unwrap();
        assert_eq!(a.sha, CodeSha256::of(&zip));
        assert_eq!(a.sha, b.sha);
    }

    #[test]
    fn refuses_bad_base64_and_bad_zips() {
        assert!(matches!(
            check_blocking(b"%%%"),
            Err(Error::InvalidParameterValue(_))
        ));
        let evil = base64::engine::general_purpose::STANDARD.encode(zip_of("../evil"));
        let garbage = base64::engine::general_purpose::STANDARD.encode(b"not a zip");
        for refused in [evil, garbage] {
            let Err(Error::InvalidParameterValue(message)) = check_blocking(refused.as_bytes())
            else {
                panic!("an unusable zip was not an invalid parameter");
            };
            assert!(
                message.contains("escapes") || message.contains("Could not unzip"),
                "{message}"
            );
        }
    }

    #[test]
    fn code_from_s3_is_refused() {
        let code = FunctionCode {
            s3_bucket: Some("b".into()),
            s3_key: Some("k".into()),
            ..FunctionCode::default()
        };
        let Err(Error::InvalidParameterValue(message)) = zip_file(code) else {
            panic!("S3 code was accepted");
        };
        assert!(message.contains("ZipFile"), "{message}");
    }

    #[test]
    fn location_follows_the_host_the_caller_used() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("nimbus.local:9000"));
        let sha = CodeSha256::of(b"zip");
        assert_eq!(
            location(
                &GatewayConfig::default(),
                &headers,
                &Uri::from_static("/x"),
                &sha
            ),
            format!("http://nimbus.local:9000/nimbus/v1/code/{}", sha.to_hex())
        );
    }
}
