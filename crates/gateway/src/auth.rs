//! Who may call the gateway. With keys configured, every request must carry a valid AWS
//! Signature Version 4 by one of them, for the service `lambda` in any region: in the
//! `Authorization` header, as the SDKs sign, or in the query, as a presigned URL (the code
//! download `GetFunction` points to is one). The cheap checks (the signature's form, the key,
//! the time) come before the body is read; the body is then read only up to the route's
//! limit, hashed into the signature, and handed on unchanged.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use nimbus_core::Error;
use nimbus_core::sigv4::{self, SignableRequest, Signed};
use time::OffsetDateTime;

use crate::MAX_CONTROL_BODY_BYTES;
use crate::error::ApiError;
use crate::payload;
use crate::state::{AppState, GatewayConfig};

/// The service every signature must be scoped to, as for Lambda.
pub(crate) const SERVICE: &str = "lambda";
/// How long the code URL of `GetFunction` stays valid (Lambda's: 10 minutes).
const CODE_URL_EXPIRY_SECS: u64 = 600;
const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
/// Bodies larger than this are hashed on the blocking pool.
const BLOCKING_HASH_BYTES: usize = 256 * 1024;

/// Middleware: passes a request on only if it is signed by a configured key (or no key is
/// configured).
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if state.config().credentials.is_empty() {
        return next.run(request).await;
    }
    match verified(state.config(), request, OffsetDateTime::now_utc()).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// What a request claims about its signature, before the signature is checked.
struct Claim {
    signed: Signed,
    amz_date: String,
    time: OffsetDateTime,
    /// A presigned URL's lifetime; `None` for a signed header.
    expires_secs: Option<u64>,
}

pub(crate) async fn verified(
    config: &GatewayConfig,
    request: Request,
    now: OffsetDateTime,
) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let claim = claim(&parts, query)?;
    let credentials = config
        .credentials
        .iter()
        .find(|key| key.access_key_id() == claim.signed.access_key_id)
        .ok_or_else(|| {
            unauthenticated(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        })?;
    check_scope(&claim)?;
    check_time(&claim, now)?;

    let (limit, too_large) = body_limit(config, &parts);
    let body = payload::read_bounded(&parts.headers, body, limit, || {
        Error::RequestTooLarge(too_large.clone())
    })
    .await?;
    let payload_sha256 = hash(body.clone()).await?;
    let mut headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    // HTTP/2 names the host in the `:authority` pseudo-header, which SigV4 signs as `host`.
    let authority = parts.uri.authority().map(|a| a.as_str());
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = authority
    {
        headers.push(("host", authority));
    }
    let signable = SignableRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query,
        headers: &headers,
        payload_sha256: &payload_sha256,
    };
    let signed_headers: Vec<&str> = claim
        .signed
        .signed_headers
        .iter()
        .map(String::as_str)
        .collect();
    let canonical = sigv4::canonical_request(&signable, &signed_headers);
    if !sigv4::signature_matches(
        credentials.secret_access_key(),
        &claim.amz_date,
        &claim.signed.scope,
        &canonical,
        &claim.signed.signature,
    ) {
        return Err(invalid_signature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        ));
    }
    tracing::debug!(
        access_key_id = credentials.access_key_id(),
        "request authenticated"
    );
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// The signature's claims from the `Authorization` header, or else from a presigned query.
fn claim(parts: &Parts, query: &str) -> Result<Claim, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| incomplete("The Authorization header is not ASCII text."))?;
        let signed = sigv4::parse_authorization(value).map_err(incomplete)?;
        let amz_date = parts
            .headers
            .get(AMZ_DATE)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                incomplete("Authorization header requires existence of a 'X-Amz-Date' header.")
            })?
            .to_owned();
        let time = parse_time(&amz_date)?;
        return Ok(Claim {
            signed,
            amz_date,
            time,
            expires_secs: None,
        });
    }
    if sigv4::is_presigned(query) {
        let presigned = sigv4::parse_presigned(query).map_err(incomplete)?;
        let time = parse_time(&presigned.amz_date)?;
        return Ok(Claim {
            signed: presigned.signed,
            amz_date: presigned.amz_date,
            time,
            expires_secs: Some(presigned.expires_secs),
        });
    }
    Err(unauthenticated(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    ))
}

fn parse_time(amz_date: &str) -> Result<OffsetDateTime, ApiError> {
    sigv4::parse_amz_date(amz_date).ok_or_else(|| {
        incomplete(format!(
            "X-Amz-Date must have the form YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."
        ))
    })
}

/// The scope must be this service's, on the day the request was signed; any region will do.
fn check_scope(claim: &Claim) -> Result<(), ApiError> {
    let scope = &claim.signed.scope;
    if !claim
        .signed
        .signed_headers
        .iter()
        .any(|name| name == "host")
    {
        return Err(incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    if scope.service != SERVICE {
        return Err(invalid_signature(format!(
            "Credential should be scoped to correct service: '{SERVICE}'. "
        )));
    }
    let day = claim.amz_date.get(..8).unwrap_or_default();
    if scope.date != day {
        return Err(invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{}'.",
            scope.date, claim.amz_date
        )));
    }
    Ok(())
}

/// A signed header may be up to 15 minutes off the gateway's clock either way; a presigned
/// URL is valid from (15 minutes before) its time until it expires.
fn check_time(claim: &Claim, now: OffsetDateTime) -> Result<(), ApiError> {
    let stamp = sigv4::format_amz_date;
    if claim.time > now + sigv4::MAX_SKEW {
        return Err(invalid_signature(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            claim.amz_date,
            stamp(now + sigv4::MAX_SKEW),
            stamp(now)
        )));
    }
    match claim.expires_secs {
        None if claim.time < now - sigv4::MAX_SKEW => Err(invalid_signature(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            claim.amz_date,
            stamp(now - sigv4::MAX_SKEW),
            stamp(now)
        ))),
        Some(secs) => {
            let expiry = claim.time + time::Duration::seconds(i64::try_from(secs).unwrap_or(0));
            if now > expiry {
                Err(invalid_signature(format!(
                    "Signature expired: the URL signed at {} for {secs} seconds expired at {}; \
                     it is now {}",
                    claim.amz_date,
                    stamp(expiry),
                    stamp(now)
                )))
            } else {
                Ok(())
            }
        }
        None => Ok(()),
    }
}

/// The most the verifier reads of a body, and the message past it: the route's own limit,
/// so that a request too large for its route is refused as the route would refuse it.
fn body_limit(config: &GatewayConfig, parts: &Parts) -> (usize, String) {
    // `POST /2015-03-31/functions/{FunctionName}/invocations`; a name never holds a `/`.
    let invoke = parts.method == Method::POST
        && parts
            .uri
            .path()
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|rest| rest.strip_suffix("/invocations"))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    if !invoke {
        return (
            MAX_CONTROL_BODY_BYTES,
            format!("Request must be smaller than {MAX_CONTROL_BODY_BYTES} bytes"),
        );
    }
    let event = parts
        .headers
        .get(INVOCATION_TYPE)
        .is_some_and(|value| value.as_bytes() == b"Event");
    let limit = if event {
        config.max_async_payload_bytes
    } else {
        config.max_sync_payload_bytes
    };
    (
        limit,
        format!("Request must be smaller than {limit} bytes for the InvokeFunction operation"),
    )
}

async fn hash(body: Bytes) -> Result<String, Error> {
    if body.len() <= BLOCKING_HASH_BYTES {
        return Ok(sigv4::sha256_hex(&body));
    }
    // A 50 MB code upload takes a while to hash: not on the reactor.
    tokio::task::spawn_blocking(move || sigv4::sha256_hex(&body))
        .await
        .map_err(|e| Error::Service(format!("body hashing task failed: {e}")))
}

/// Where `GetFunction`'s `Code.Location` points with keys configured: the query of a
/// presigned `GET` of `path` on `host`, by the first key, valid for 10 minutes. `None`
/// without keys.
pub(crate) fn presigned_code_query(
    config: &GatewayConfig,
    path: &str,
    host: &str,
) -> Option<String> {
    let credentials = config.credentials.first()?;
    let now = OffsetDateTime::now_utc();
    let scope = sigv4::Scope::new(now, &config.region, SERVICE);
    Some(sigv4::presigned_query(
        credentials,
        &scope,
        now,
        CODE_URL_EXPIRY_SECS,
        path,
        host,
    ))
}

fn unauthenticated(error_type: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated {
        error_type,
        message: message.into(),
    }
}

fn incomplete(message: impl Into<String>) -> ApiError {
    unauthenticated("IncompleteSignatureException", message)
}

fn invalid_signature(message: impl Into<String>) -> ApiError {
    unauthenticated("InvalidSignatureException", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_at(amz_date: &str, expires_secs: Option<u64>) -> Claim {
        let time = sigv4::parse_amz_date(amz_date).unwrap();
        Claim {
            signed: Signed {
                access_key_id: "k".into(),
                scope: sigv4::Scope::new(time, "us-east-1", SERVICE),
                signed_headers: vec!["host".into()],
                signature: String::new(),
            },
            amz_date: amz_date.to_owned(),
            time,
            expires_secs,
        }
    }

    fn refusal(result: Result<(), ApiError>) -> (&'static str, String) {
        match result {
            Err(ApiError::Unauthenticated {
                error_type,
                message,
            }) => (error_type, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_time_window_is_fifteen_minutes_either_way() {
        let now = sigv4::parse_amz_date("20240101T120000Z").unwrap();
        for inside in ["20240101T114600Z", "20240101T121400Z", "20240101T120000Z"] {
            check_time(&claim_at(inside, None), now).unwrap();
        }
        let (error_type, message) = refusal(check_time(&claim_at("20240101T114400Z", None), now));
        assert_eq!(error_type, "InvalidSignatureException");
        assert_eq!(
            message,
            "Signature expired: 20240101T114400Z is now earlier than 20240101T114500Z \
             (20240101T120000Z - 15 min.)"
        );
        let (_, message) = refusal(check_time(&claim_at("20240101T121600Z", None), now));
        assert!(
            message.starts_with("Signature not yet current"),
            "{message}"
        );
    }

    #[test]
    fn presigned_urls_live_until_they_expire() {
        let now = sigv4::parse_amz_date("20240101T120000Z").unwrap();
        check_time(&claim_at("20240101T115100Z", Some(600)), now).unwrap();
        let (_, message) = refusal(check_time(&claim_at("20240101T114900Z", Some(600)), now));
        assert!(message.starts_with("Signature expired"), "{message}");
    }

    #[test]
    fn scopes_must_name_lambda_and_the_day() {
        let mut claim = claim_at("20240101T120000Z", None);
        check_scope(&claim).unwrap();
        claim.signed.scope.service = "s3".into();
        assert!(refusal(check_scope(&claim)).1.contains("'lambda'"));
        let mut claim = claim_at("20240101T120000Z", None);
        claim.signed.scope.date = "20231231".into();
        assert!(
            refusal(check_scope(&claim))
                .1
                .contains("Date in Credential scope")
        );
        let mut claim = claim_at("20240101T120000Z", None);
        claim.signed.signed_headers = vec!["x-amz-date".into()];
        assert_eq!(
            refusal(check_scope(&claim)).0,
            "IncompleteSignatureException"
        );
    }
}
