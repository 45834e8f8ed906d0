//! Gives every request a [`RequestId`]: handlers find it in the request's extensions (the
//! invoke uses it as the invocation's id), every log line of the request carries it, and every
//! response, error or not, returns it in `x-amzn-RequestId`. A `413` closes the connection. The request's span continues the
//! caller's trace when the request carries a W3C `traceparent`.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use nimbus_core::RequestId;
use tracing::Instrument as _;

pub(crate) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-amzn-requestid");

pub(crate) async fn assign(mut request: Request, next: Next) -> Response {
    let id = RequestId::new();
    request.extensions_mut().insert(id);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = request
        .headers()
        .get(nimbus_telemetry::trace::TRACEPARENT)
        .and_then(|value| value.to_str().ok())
    {
        nimbus_telemetry::trace::set_parent(&span, parent);
    }
    nimbus_telemetry::trace::record_trace_id(&span);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::try_from(id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // A body too large is refused unread, so the rest of it is still on the connection:
    // tell the client not to send another request there (the server closes it).
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
