//! An `Invoke` request as the gateway parses it before running anything: the `X-Amz-*`,
//! callback and trace headers, and the payload. The input is header lines
//! (`name: value`), a blank line, then the payload. Parsing must not panic, and an accepted
//! payload is UTF-8 JSON within the nesting limit.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use nimbus_core::limits;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&[][..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        // Only what hyper would hand the handler: valid names and values.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    if let Ok(payload) = nimbus_gateway::fuzzing::parse_invoke_request(&headers, Bytes::copy_from_slice(body)) {
        let text = std::str::from_utf8(&payload).expect("an accepted payload is UTF-8");
        // Brackets inside strings are text; without strings every bracket nests.
        if !text.contains('"') {
            assert!(nesting_at_most(text, limits::MAX_PAYLOAD_NESTING));
        }
    }
});

/// Whether a string-free JSON text nests at most `limit` deep.
fn nesting_at_most(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}
