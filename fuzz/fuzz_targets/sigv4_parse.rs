//! What a SigV4-signed request's caller controls: the `Authorization` header, a presigned
//! query string, `X-Amz-Date`, the path and the query. Parsing and canonicalising must not
//! panic, and what parses must hold what the verifier relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_core::sigv4;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(signed) = sigv4::parse_authorization(&text) {
        assert!(!signed.access_key_id.is_empty());
        assert!(
            signed
                .signed_headers
                .iter()
                .all(|name| !name.is_empty() && *name == name.to_ascii_lowercase())
        );
    }
    if sigv4::is_presigned(&text)
        && let Ok(presigned) = sigv4::parse_presigned(&text)
    {
        assert!((1..=sigv4::MAX_PRESIGNED_EXPIRY_SECS).contains(&presigned.expires_secs));
    }
    if let Some(time) = sigv4::parse_amz_date(&text) {
        // A date that parses prints back as itself.
        assert_eq!(sigv4::format_amz_date(time), text);
    }
    // The path and query of the request, split as a URI would be.
    let (path, query) = text.split_once('?').unwrap_or((&text, ""));
    let canonical_query = sigv4::canonical_query(query);
    // Canonical forms are made of unreserved characters and escapes only.
    assert!(canonical_query.bytes().all(|b| b.is_ascii_graphic()));
    assert!(sigv4::canonical_uri(path).bytes().all(|b| b.is_ascii_graphic()));
    let _ = sigv4::parse_credentials_file(&text);
    // Verifying against garbage is a refusal, never a panic.
    let scope = sigv4::Scope {
        date: "20150830".into(),
        region: "us-east-1".into(),
        service: "lambda".into(),
    };
    assert!(!sigv4::signature_matches("secret", &text, &scope, path, query));
});
