//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`): the one implementation behind the gateway's
//! verifier and the `nimbus` CLI's signer. The canonical request, the string to sign, the
//! signing key and the signature; the `Authorization` header and presigned query strings,
//! built and parsed; the shared-credentials file. No I/O: times are passed in.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::format_description;

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last part of every credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// The hex SHA-256 of nothing: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// How far a request's signing time may be from the server's clock, either way (AWS: 15
/// minutes).
pub const MAX_SKEW: time::Duration = time::Duration::minutes(15);
/// The longest a presigned URL may be valid (AWS: 7 days).
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 604_800;

/// The query parameters of a presigned URL.
pub const QUERY_ALGORITHM: &str = "X-Amz-Algorithm";
pub const QUERY_CREDENTIAL: &str = "X-Amz-Credential";
pub const QUERY_DATE: &str = "X-Amz-Date";
pub const QUERY_EXPIRES: &str = "X-Amz-Expires";
pub const QUERY_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
pub const QUERY_SIGNATURE: &str = "X-Amz-Signature";

/// An access key: its id, which travels in requests, and its secret, which never does.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
}

impl Credentials {
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }
}

/// The secret stays out of logs and panics.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// Reads an AWS shared-credentials file: `[profile]` sections, each with
/// `aws_access_key_id` and `aws_secret_access_key` (`key = value`); lines starting with `#`
/// or `;` are comments and other keys are ignored. Every profile is one key; an access key
/// id may appear only once.
pub fn parse_credentials_file(text: &str) -> Result<Vec<Credentials>, String> {
    struct Profile {
        name: String,
        id: Option<String>,
        secret: Option<String>,
    }
    let mut profiles: Vec<Profile> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profiles.push(Profile {
                name: name.trim().to_owned(),
                id: None,
                secret: None,
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected `[profile]` or `key = value`",
                number + 1
            ));
        };
        let Some(profile) = profiles.last_mut() else {
            return Err(format!("line {}: a key outside any [profile]", number + 1));
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "aws_access_key_id" => profile.id = Some(value),
            "aws_secret_access_key" => profile.secret = Some(value),
            _ => {}
        }
    }
    let mut keys: Vec<Credentials> = Vec::new();
    for profile in profiles {
        let (Some(id), Some(secret)) = (profile.id, profile.secret) else {
            return Err(format!(
                "profile [{}] needs both aws_access_key_id and aws_secret_access_key",
                profile.name
            ));
        };
        if id.is_empty() || secret.is_empty() {
            return Err(format!("profile [{}] has an empty key", profile.name));
        }
        if keys.iter().any(|k| k.access_key_id == id) {
            return Err(format!(
                "access key id {id} appears twice (profile [{}])",
                profile.name
            ));
        }
        keys.push(Credentials::new(id, secret));
    }
    if keys.is_empty() {
        return Err("no [profile] with credentials".to_owned());
    }
    Ok(keys)
}

/// `YYYYMMDD'T'HHMMSS'Z'`, the form of `X-Amz-Date`.
pub fn format_amz_date(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// Parses an `X-Amz-Date` value (`20150830T123600Z`).
pub fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    if value.len() != 16 {
        return None;
    }
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(value, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

/// The credential scope: a key is valid for one day, region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// The scope of a request signed at `time`.
    pub fn new(time: OffsetDateTime, region: &str, service: &str) -> Self {
        let mut date = format_amz_date(time);
        date.truncate(8);
        Self {
            date,
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// What a signature covers of a request.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoded as the client encoded it (SigV4 encodes it once
    /// more, as every service but S3 expects).
    pub path: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    /// The request's headers, names in any case; a name may repeat.
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// The canonical request over `signed_headers` (lowercase names, in the order the
/// signature lists them, which is sorted).
pub fn canonical_request(request: &SignableRequest<'_>, signed_headers: &[&str]) -> String {
    let mut canonical = String::new();
    canonical.push_str(request.method);
    canonical.push('\n');
    canonical.push_str(&canonical_uri(request.path));
    canonical.push('\n');
    canonical.push_str(&canonical_query(request.query));
    canonical.push('\n');
    for name in signed_headers {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(&values.join(","));
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(request.payload_sha256);
    canonical
}

/// The path, URI-encoded with `/` kept; an empty path is `/`.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    uri_encode(path, false)
}

/// The query's parameters, decoded, then encoded the SigV4 way and sorted by name and value.
/// A presigned URL's own `X-Amz-Signature` is left out, as it cannot sign itself.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .filter(|(key, _)| key != QUERY_SIGNATURE)
        .map(|(key, value)| (uri_encode(&key, true), uri_encode(&value, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4's URI encoding: every byte but the unreserved ones (`A-Z a-z 0-9 - _ . ~`) as
/// `%XY`, and `/` too when `encode_slash`.
pub fn uri_encode(value: &str, encode_slash: bool) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(char::from(byte));
            }
            b'/' if !encode_slash => encoded.push('/'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// `%XY` sequences decoded; anything else, malformed escapes included, kept as it is.
pub fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

fn hmac(key: &[u8], data: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(data);
    mac
}

/// The key of one scope: `HMAC("AWS4" + secret, date)`, then region, service, terminator.
pub fn signing_key(secret_access_key: &str, scope: &Scope) -> Vec<u8> {
    let mut key = format!("AWS4{secret_access_key}").into_bytes();
    for part in [
        scope.date.as_str(),
        scope.region.as_str(),
        scope.service.as_str(),
        TERMINATOR,
    ] {
        key = hmac(&key, part.as_bytes()).finalize().into_bytes().to_vec();
    }
    key
}

/// The hex signature of `canonical_request`.
pub fn signature(
    secret_access_key: &str,
    amz_date: &str,
    scope: &Scope,
    canonical_request: &str,
) -> String {
    let key = signing_key(secret_access_key, scope);
    let string_to_sign = string_to_sign(amz_date, scope, canonical_request);
    hex::encode(
        hmac(&key, string_to_sign.as_bytes())
            .finalize()
            .into_bytes(),
    )
}

/// Whether `given` (hex) is the signature of `canonical_request`, compared in constant time.
pub fn signature_matches(
    secret_access_key: &str,
    amz_date: &str,
    scope: &Scope,
    canonical_request: &str,
    given: &str,
) -> bool {
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let key = signing_key(secret_access_key, scope);
    let string_to_sign = string_to_sign(amz_date, scope, canonical_request);
    hmac(&key, string_to_sign.as_bytes())
        .verify_slice(&given)
        .is_ok()
}

/// Signs `request` for the `Authorization` header. Every header in `request.headers` is
/// signed; they must include `host` and `x-amz-date` (`amz_date`, the time of `scope`).
pub fn authorization(
    credentials: &Credentials,
    scope: &Scope,
    amz_date: &str,
    request: &SignableRequest<'_>,
) -> String {
    let mut names: Vec<String> = request
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    let signed: Vec<&str> = names.iter().map(String::as_str).collect();
    let canonical = canonical_request(request, &signed);
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={}, Signature={}",
        credentials.access_key_id,
        signed.join(";"),
        signature(&credentials.secret_access_key, amz_date, scope, &canonical)
    )
}

/// The query string (without `?`) that makes a `GET` of `path` on `host` valid without any
/// header for `expires_secs` after `time`: a presigned URL, signing `host` only and the empty
/// body.
pub fn presigned_query(
    credentials: &Credentials,
    scope: &Scope,
    time: OffsetDateTime,
    expires_secs: u64,
    path: &str,
    host: &str,
) -> String {
    let amz_date = format_amz_date(time);
    let credential = format!("{}/{scope}", credentials.access_key_id);
    let query = format!(
        "{QUERY_ALGORITHM}={ALGORITHM}&{QUERY_CREDENTIAL}={}&{QUERY_DATE}={amz_date}\
         &{QUERY_EXPIRES}={expires_secs}&{QUERY_SIGNED_HEADERS}=host",
        uri_encode(&credential, true)
    );
    let request = SignableRequest {
        method: "GET",
        path,
        query: &query,
        headers: &[("host", host)],
        payload_sha256: EMPTY_SHA256,
    };
    let canonical = canonical_request(&request, &["host"]);
    let signature = signature(&credentials.secret_access_key, &amz_date, scope, &canonical);
    format!("{query}&{QUERY_SIGNATURE}={signature}")
}

/// What a signed request claims: who signed it, for which scope, over which headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub access_key_id: String,
    pub scope: Scope,
    /// Lowercase, as listed.
    pub signed_headers: Vec<String>,
    /// Hex, as given.
    pub signature: String,
}

/// Parses `ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, Scope), String> {
    let parts: Vec<&str> = credential.rsplitn(5, '/').collect();
    let [terminator, service, region, date, access_key_id] = parts.as_slice() else {
        return Err(format!(
            "Credential should have the form ACCESS_KEY_ID/DATE/REGION/SERVICE/{TERMINATOR}, \
             not '{credential}'."
        ));
    };
    if *terminator != TERMINATOR {
        return Err(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not \
             '{terminator}'."
        ));
    }
    if access_key_id.is_empty() || date.is_empty() || region.is_empty() || service.is_empty() {
        return Err(format!("Credential has an empty part: '{credential}'."));
    }
    Ok((
        (*access_key_id).to_owned(),
        Scope {
            date: (*date).to_owned(),
            region: (*region).to_owned(),
            service: (*service).to_owned(),
        },
    ))
}

fn parse_signed_headers(value: &str) -> Vec<String> {
    value
        .split(';')
        .filter(|name| !name.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Parses an `Authorization` header of the form
/// `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`. The error is the
/// message to answer with.
pub fn parse_authorization(value: &str) -> Result<Signed, String> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(format!(
            "Authorization header must use {ALGORITHM}, not '{algorithm}'."
        ));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "Credential" => credential = Some(value.trim()),
            "SignedHeaders" => signed_headers = Some(value.trim()),
            "Signature" => signature = Some(value.trim()),
            _ => {}
        }
    }
    let missing: Vec<String> = [
        ("Credential", credential.is_none()),
        ("Signature", signature.is_none()),
        ("SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, missing)| *missing)
    .map(|(name, _)| format!("Authorization header requires '{name}' parameter."))
    .collect();
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(missing.join(" "));
    };
    let (access_key_id, scope) = parse_credential(credential)?;
    Ok(Signed {
        access_key_id,
        scope,
        signed_headers: parse_signed_headers(signed_headers),
        signature: signature.to_owned(),
    })
}

/// A presigned request's authentication, from its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    pub signed: Signed,
    /// `X-Amz-Date`, as given.
    pub amz_date: String,
    pub expires_secs: u64,
}

/// Whether the query carries a presigned URL's signature.
pub fn is_presigned(query: &str) -> bool {
    query_value(query, QUERY_SIGNATURE).is_some()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Parses the `X-Amz-*` parameters of a presigned URL. The error is the message to answer
/// with.
pub fn parse_presigned(query: &str) -> Result<Presigned, String> {
    let get = |name: &str| {
        query_value(query, name)
            .ok_or_else(|| format!("A presigned URL requires the '{name}' query parameter."))
    };
    let algorithm = get(QUERY_ALGORITHM)?;
    if algorithm != ALGORITHM {
        return Err(format!(
            "{QUERY_ALGORITHM} must be {ALGORITHM}, not '{algorithm}'."
        ));
    }
    let (access_key_id, scope) = parse_credential(&get(QUERY_CREDENTIAL)?)?;
    let expires_secs = get(QUERY_EXPIRES)?
        .parse::<u64>()
        .ok()
        .filter(|secs| (1..=MAX_PRESIGNED_EXPIRY_SECS).contains(secs))
        .ok_or_else(|| {
            format!(
                "{QUERY_EXPIRES} must be a number of seconds from 1 to \
                 {MAX_PRESIGNED_EXPIRY_SECS}."
            )
        })?;
    Ok(Presigned {
        signed: Signed {
            access_key_id,
            scope,
            signed_headers: parse_signed_headers(&get(QUERY_SIGNED_HEADERS)?),
            signature: get(QUERY_SIGNATURE)?,
        },
        amz_date: get(QUERY_DATE)?,
        expires_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The AWS Signature Version 4 test suite's credentials, time and scope.
    const KEY_ID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const AMZ_DATE: &str = "20150830T123600Z";

    fn suite_scope() -> Scope {
        Scope {
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        }
    }

    fn suite_credentials() -> Credentials {
        Credentials::new(KEY_ID, SECRET)
    }

    /// Signs one of the suite's requests to `example.amazonaws.com` and returns the
    /// `Authorization` header.
    fn sign_suite(
        method: &str,
        path: &str,
        query: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let mut headers = vec![("Host", "example.amazonaws.com"), ("X-Amz-Date", AMZ_DATE)];
        headers.extend_from_slice(extra);
        let payload = sha256_hex(body);
        let request = SignableRequest {
            method,
            path,
            query,
            headers: &headers,
            payload_sha256: &payload,
        };
        authorization(&suite_credentials(), &suite_scope(), AMZ_DATE, &request)
    }

    fn suite_authorization(signed_headers: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed_headers}, Signature={signature}"
        )
    }

    #[test]
    fn get_vanilla() {
        let request = SignableRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &[("Host", "example.amazonaws.com"), ("X-Amz-Date", AMZ_DATE)],
            payload_sha256: EMPTY_SHA256,
        };
        let canonical = canonical_request(&request, &["host", "x-amz-date"]);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(AMZ_DATE, &suite_scope(), &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            sign_suite("GET", "/", "", &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_empty_query_key() {
        let request = SignableRequest {
            method: "GET",
            path: "/",
            query: "Param1=value1",
            headers: &[("Host", "example.amazonaws.com"), ("X-Amz-Date", AMZ_DATE)],
            payload_sha256: EMPTY_SHA256,
        };
        let canonical = canonical_request(&request, &["host", "x-amz-date"]);
        assert_eq!(
            string_to_sign(AMZ_DATE, &suite_scope(), &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab"
        );
        assert_eq!(
            sign_suite("GET", "/", "Param1=value1", &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert_eq!(
            sign_suite("GET", "/", "Param2=value2&Param1=value1", &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn get_vanilla_query_unreserved() {
        let unreserved = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        assert_eq!(
            sign_suite("GET", "/", &format!("{unreserved}={unreserved}"), &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"
            )
        );
    }

    #[test]
    fn get_utf8() {
        // The suite's path is the decoded `/ሴ`; its canonical form is `/%E1%88%B4`.
        assert_eq!(canonical_uri("/\u{1234}"), "/%E1%88%B4");
        assert_eq!(
            sign_suite("GET", "/\u{1234}", "", &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
            )
        );
    }

    #[test]
    fn post_vanilla() {
        assert_eq!(
            sign_suite("POST", "/", "", &[], b""),
            suite_authorization(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let content_type = [("Content-Type", "application/x-www-form-urlencoded")];
        let payload = sha256_hex(b"Param1=value1");
        assert_eq!(
            payload,
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        let headers = [
            content_type[0],
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", AMZ_DATE),
        ];
        let request = SignableRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            payload_sha256: &payload,
        };
        let canonical = canonical_request(&request, &["content-type", "host", "x-amz-date"]);
        assert_eq!(
            canonical,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n\
             host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             content-type;host;x-amz-date\n\
             9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert!(
            string_to_sign(AMZ_DATE, &suite_scope(), &canonical)
                .ends_with("42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        );
        assert_eq!(
            sign_suite("POST", "/", "", &content_type, b"Param1=value1"),
            suite_authorization(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let request = SignableRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &[("My-Header", "  a   b  "), ("my-header", "c")],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(canonical_request(&request, &["my-header"]).contains("\nmy-header:a b,c\n"));
    }

    #[test]
    fn paths_are_encoded_once_more_as_botocore_does() {
        // botocore sends an ARN's `:` as `%3A`; the canonical path encodes the `%`.
        assert_eq!(
            canonical_uri("/2015-03-31/functions/arn%3Aaws%3Alambda/invocations"),
            "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
        );
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn signatures_are_checked() {
        let canonical = "GET\n/\n\nhost:h\n\nhost\n".to_owned() + EMPTY_SHA256;
        let good = signature(SECRET, AMZ_DATE, &suite_scope(), &canonical);
        assert!(signature_matches(
            SECRET,
            AMZ_DATE,
            &suite_scope(),
            &canonical,
            &good
        ));
        assert!(!signature_matches(
            "other",
            AMZ_DATE,
            &suite_scope(),
            &canonical,
            &good
        ));
        assert!(!signature_matches(
            SECRET,
            AMZ_DATE,
            &suite_scope(),
            &canonical,
            "zz"
        ));
        assert!(!signature_matches(
            SECRET,
            AMZ_DATE,
            &suite_scope(),
            &canonical,
            &good[..62]
        ));
    }

    #[test]
    fn authorization_headers_parse_back() {
        let header = sign_suite("GET", "/", "", &[], b"");
        let signed = parse_authorization(&header).unwrap();
        assert_eq!(signed.access_key_id, KEY_ID);
        assert_eq!(signed.scope, suite_scope());
        assert_eq!(signed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(
            signed.signature,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn garbled_authorization_headers_are_refused() {
        let message =
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request").unwrap_err();
        assert!(message.contains("'Signature'"), "{message}");
        assert!(message.contains("'SignedHeaders'"), "{message}");
        assert!(parse_authorization("Basic dXNlcjpwYXNz").is_err());
        assert!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=k/20150830/us-east-1/lambda/aws5_request, \
                 SignedHeaders=host, Signature=00"
            )
            .unwrap_err()
            .contains("terminator")
        );
        assert!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=k/us-east-1/lambda/aws4_request, \
                 SignedHeaders=host, Signature=00"
            )
            .is_err()
        );
    }

    #[test]
    fn presigned_queries_parse_and_verify() {
        let time = parse_amz_date(AMZ_DATE).unwrap();
        let scope = suite_scope();
        let query = presigned_query(&suite_credentials(), &scope, time, 600, "/code/ab", "h:1");
        assert!(is_presigned(&query));
        let presigned = parse_presigned(&query).unwrap();
        assert_eq!(presigned.amz_date, AMZ_DATE);
        assert_eq!(presigned.expires_secs, 600);
        assert_eq!(presigned.signed.access_key_id, KEY_ID);
        assert_eq!(presigned.signed.signed_headers, ["host"]);
        // The verifier's view: the same request, its signature left out of the canonical query.
        let request = SignableRequest {
            method: "GET",
            path: "/code/ab",
            query: &query,
            headers: &[("host", "h:1")],
            payload_sha256: EMPTY_SHA256,
        };
        let canonical = canonical_request(&request, &["host"]);
        assert!(signature_matches(
            SECRET,
            AMZ_DATE,
            &scope,
            &canonical,
            &presigned.signed.signature
        ));
        let other_path = SignableRequest {
            path: "/code/cd",
            ..request
        };
        assert!(!signature_matches(
            SECRET,
            AMZ_DATE,
            &scope,
            &canonical_request(&other_path, &["host"]),
            &presigned.signed.signature
        ));
        assert!(parse_presigned(&query.replace("=600", "=0")).is_err());
        assert!(!is_presigned("a=b"));
    }

    #[test]
    fn amz_dates_round_trip() {
        let time = parse_amz_date(AMZ_DATE).unwrap();
        assert_eq!(format_amz_date(time), AMZ_DATE);
        assert_eq!(Scope::new(time, "r", "s").date, "20150830");
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        assert!(parse_amz_date("20150830T123600").is_none());
    }

    #[test]
    fn credentials_files_hold_one_key_per_profile() {
        let text = "# keys\n[default]\naws_access_key_id = AKID1\naws_secret_access_key=s1\n\n\
                    [ci]\n; another\naws_access_key_id=AKID2\naws_secret_access_key = s2\n\
                    region = eu-west-1\n";
        let keys = parse_credentials_file(text).unwrap();
        assert_eq!(
            keys,
            [
                Credentials::new("AKID1", "s1"),
                Credentials::new("AKID2", "s2")
            ]
        );
        assert!(!format!("{keys:?}").contains("s1"));
        for bad in [
            "",
            "aws_access_key_id = a\n",
            "[x]\naws_access_key_id = a\n",
            "[x]\nnonsense\n",
            "[a]\naws_access_key_id=k\naws_secret_access_key=s\n\
             [b]\naws_access_key_id=k\naws_secret_access_key=t\n",
        ] {
            assert!(parse_credentials_file(bad).is_err(), "{bad:?}");
        }
    }
}
