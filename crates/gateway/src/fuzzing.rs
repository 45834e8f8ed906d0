//! The gateway's pure request parsers, exposed to the fuzz targets under `fuzz/` (feature
//! `fuzzing`). Nothing here is part of the gateway's API; it calls what the handlers call.

use axum::http::HeaderMap;
use bytes::Bytes;
use nimbus_core::Error;

use crate::invoke::{self, InvokeOptions};

/// Parses an `Invoke` request as the handler does before it runs anything: the `X-Amz-*`
/// headers, the callback URL and `traceparent` headers, and the payload.
pub fn parse_invoke_request(headers: &HeaderMap, payload: Bytes) -> Result<Bytes, Error> {
    InvokeOptions::parse(headers)?;
    invoke::trace_context(headers);
    if let Some(url) = headers
        .get("x-nimbus-callback-url")
        .and_then(|value| value.to_str().ok())
    {
        invoke::checked_callback_url(url)?;
    }
    invoke::checked_payload(payload)
}
