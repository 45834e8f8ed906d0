//! Gives every request a [`RequestId`]: handlers find it in the request's extensions (the
//! invoke uses it as the invocation's id), every log line of the request carries it, and every
//! response, error or not, returns it in `x-amzn-RequestId`. An error answered to a request
//! with a body closes the connection (the body may be unread). The request's span continues the
//! caller's trace when the request carries a W3C `traceparent`.

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, Version, header};
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
    let carries_body = !request.body().is_end_stream();
    let version = request.version();
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::try_from(id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // An error may be answered before the request's body is read (a body too large, an
    // unknown function): the rest of it is then still on the connection, which the server
    // closes. Say so, or an HTTP/1.1 client reuses it and its next request is lost.
    let may_be_unread = response.status() == StatusCode::PAYLOAD_TOO_LARGE
        || (carries_body
            && (response.status().is_client_error() || response.status().is_server_error()));
    if may_be_unread && version <= Version::HTTP_11 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
