//! `Invoke`: `POST /2015-03-31/functions/{FunctionName}/invocations`.
//!
//! The `X-Amz-*` headers are parsed first, then the invocation type picks the path:
//! `RequestResponse` and `DryRun` run the function here; `Event` appends the event to the
//! queue and answers `202` once the queue holds it durably. The payload is read against the
//! limit of its path and never past it. Every invocation leaves a record under the request's
//! id, which is also the id the function sees: a sync one when it ends, an event `queued` as
//! soon as it is accepted.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{
    Error, FunctionName, InvocationRecord, InvocationStatus, InvocationType, InvokeOutcome,
    InvokeRequest, RequestId, limits,
};
use nimbus_queue::QueuedEvent;
use time::OffsetDateTime;
use tracing::Instrument as _;

use crate::code::BASE64;
use crate::error::ApiError;
use crate::extract::QualifiedFunctionRef;
use crate::versions;

use crate::payload;
use crate::state::AppState;

const INVOCATION_TYPE: HeaderName = HeaderName::from_static("x-amz-invocation-type");
const LOG_TYPE: HeaderName = HeaderName::from_static("x-amz-log-type");
const CLIENT_CONTEXT: HeaderName = HeaderName::from_static("x-amz-client-context");
const TRACE_ID: HeaderName = HeaderName::from_static("x-amzn-trace-id");
const EXECUTED_VERSION: HeaderName = HeaderName::from_static("x-amz-executed-version");
const FUNCTION_ERROR: HeaderName = HeaderName::from_static("x-amz-function-error");
const LOG_RESULT: HeaderName = HeaderName::from_static("x-amz-log-result");
const CALLBACK_URL: HeaderName = HeaderName::from_static("x-nimbus-callback-url");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// What the `X-Amz-*` request headers ask for.
#[derive(Debug)]
pub(crate) struct InvokeOptions {
    invocation_type: InvocationType,
    want_log_tail: bool,
    /// The decoded `X-Amz-Client-Context` JSON.
    client_context: Option<String>,
    trace_id: Option<String>,
}

pub(crate) async fn invoke(
    State(state): State<AppState>,
    Extension(request_id): Extension<RequestId>,
    QualifiedFunctionRef { name, qualifier }: QualifiedFunctionRef,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let options = InvokeOptions::parse(&headers)?;
    // Every invocation leaves a record: refuse it rather than keep the caller waiting for room.
    if state.records().is_full() {
        return Err(ApiError::Overloaded(
            "Invocation records are waiting to be written (the store is unavailable or \
             slow); try again later"
                .to_owned(),
        ));
    }
    // Every log line of this invocation names it.
    let span = tracing::info_span!(
        "invoke",
        %request_id,
        function = %name,
        invocation_type = options.invocation_type.as_str(),
    );
    match options.invocation_type {
        InvocationType::RequestResponse | InvocationType::DryRun => {
            invoke_sync(&state, request_id, name, qualifier, options, &headers, body)
                .instrument(span)
                .await
        }
        InvocationType::Event => {
            invoke_async(&state, request_id, name, qualifier, &headers, body)
                .instrument(span)
                .await
        }
    }
}

/// `Event`: checks what a caller must hear about now (size, function, JSON, callback URL,
/// a full queue), then enqueues. `X-Amz-Log-Type: Tail` is accepted and ignored, and the
/// client context is not passed on, as on Lambda.
async fn invoke_async(
    state: &AppState,
    request_id: RequestId,
    name: FunctionName,
    qualifier: Option<String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config().max_async_payload_bytes;
    let too_large = || {
        Error::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the InvokeFunction operation"
        ))
    };
    if payload::declared_length(headers).is_some_and(|length| length > limit as u64) {
        return Err(too_large().into());
    }
    // The version runs when the event does, but a qualifier that names nothing is refused now.
    let qualifier = qualifier.unwrap_or_else(|| LATEST.to_owned());
    versions::resolve(state, &name, Some(&qualifier)).await?;
    let callback_url = text(headers, &CALLBACK_URL)?
        .map(checked_callback_url)
        .transpose()?;
    let payload = checked_payload(payload::read_bounded(headers, body, limit, too_large).await?)?;

    let mut event = QueuedEvent::new(request_id, name, qualifier, payload);
    event.callback_url = callback_url;
    enqueue(state, event, headers).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Puts an accepted event on the queue, unless the queue's backlog is at its bound, then
/// records it `queued`: what `Invoke` and the asynchronous HTTP routes share. Called once the
/// request is checked, so that a bad request hears what is wrong with it even when the queue
/// is full. Each attempt continues the trace from here.
pub(crate) async fn enqueue(
    state: &AppState,
    mut event: QueuedEvent,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let admission = match state.backlog() {
        Some(bound) => Some(bound.admit().await.map_err(|full| {
            metrics::counter!(
                "nimbus_invocations_total",
                "function" => event.function_name.as_str().to_owned(),
                "type" => "Event",
                "outcome" => "throttled",
            )
            .increment(1);
            ApiError::from(full)
        })?),
        None => None,
    };
    let span = tracing::info_span!("enqueue");
    event.trace_context =
        nimbus_telemetry::trace::traceparent(&span).or_else(|| trace_context(headers));
    state.queue().enqueue(&event).instrument(span).await?;
    if let Some(admission) = admission {
        admission.confirmed();
    }
    // Only now: an event the queue refused must leave no record saying it waits.
    state
        .records()
        .record(event.record(InvocationStatus::Queued))
        .await;
    metrics::counter!(
        "nimbus_invocations_total",
        "function" => event.function_name.as_str().to_owned(),
        "type" => "Event",
        "outcome" => "accepted",
    )
    .increment(1);
    tracing::debug!(function = %event.function_name, "event queued");
    Ok(())
}

/// `X-Nimbus-Callback-Url`: where the worker POSTs the record once the invocation ends. It
/// must be an absolute `http` or `https` URL.
pub(crate) fn checked_callback_url(url: &str) -> Result<String, Error> {
    let invalid = |why: &str| {
        Error::InvalidParameterValue(format!(
            "X-Nimbus-Callback-Url must be an absolute http or https URL ({why}): {url}"
        ))
    };
    let uri: Uri = url.parse().map_err(|_| invalid("it does not parse"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("unsupported scheme")),
        None => return Err(invalid("no scheme")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(url.to_owned())
}

/// The W3C `traceparent` header, when it is well formed
/// (`VERSION-TRACEID-PARENTID-FLAGS`, lowercase hex, ids not all zero). A malformed one is
/// dropped, as the W3C recommendation says, rather than refused or passed on.
pub(crate) fn trace_context(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(&TRACEPARENT)?.to_str().ok()?.trim();
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |part: &str| part.bytes().any(|b| b != b'0');
    let parts: Vec<&str> = value.split('-').collect();
    let valid = match parts.as_slice() {
        [version, trace_id, parent_id, flags, rest @ ..] => {
            hex(version, 2)
                && *version != "ff"
                // Version 00 has exactly four fields; later versions may add some.
                && (rest.is_empty() || *version != "00")
                && hex(trace_id, 32)
                && nonzero(trace_id)
                && hex(parent_id, 16)
                && nonzero(parent_id)
                && hex(flags, 2)
        }
        _ => false,
    };
    if valid {
        Some(value.to_owned())
    } else {
        tracing::debug!(traceparent = value, "ignoring a malformed traceparent");
        None
    }
}

async fn invoke_sync(
    state: &AppState,
    request_id: RequestId,
    name: FunctionName,
    qualifier: Option<String>,
    options: InvokeOptions,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.config().max_sync_payload_bytes;
    let too_large = || {
        Error::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the InvokeFunction operation"
        ))
    };
    // A declared oversized body is refused before the function is looked up.
    let declared = payload::declared_length(headers);
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large().into());
    }
    let function = versions::resolve(state, &name, qualifier.as_deref()).await?;
    let payload = checked_payload(payload::read_bounded(headers, body, limit, too_large).await?)?;
    if options.invocation_type == InvocationType::DryRun {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }

    let request = InvokeRequest {
        request_id,
        function,
        payload,
        client_context: options.client_context,
        want_log_tail: options.want_log_tail,
        trace_id: options.trace_id,
    };
    let outcome = run_sync(state, request).await?;
    tracing::debug!(
        function_error = outcome.function_error.map(|e| e.as_str()),
        duration_ms = outcome.duration.as_secs_f64() * 1000.0,
        "invocation finished"
    );
    respond(outcome, options.want_log_tail)
}

/// Runs one synchronous invocation of a resolved function, counts it and records it: what
/// `Invoke` and the synchronous HTTP triggers share. The record is written before this
/// returns, so that it can be looked up as soon as the caller has the request id.
pub(crate) async fn run_sync(
    state: &AppState,
    request: InvokeRequest,
) -> Result<InvokeOutcome, Error> {
    let created_at = OffsetDateTime::now_utc();
    let request_id = request.request_id;
    let name = request.function.name.clone();
    let function_version = request.function.version.clone();
    let started = std::time::Instant::now();
    let result = state.invoker().invoke(request).await;
    observe_sync(&name, &result, started.elapsed());
    let record = record_of(
        request_id,
        name,
        function_version,
        created_at,
        OffsetDateTime::now_utc(),
        &result,
    );
    state.records().record(record).await;
    result
}

/// Counts a synchronous invocation by how it ended, and times it.
fn observe_sync(name: &FunctionName, result: &Result<InvokeOutcome, Error>, took: Duration) {
    let outcome = match result {
        Ok(outcome) if outcome.function_error.is_none() => "succeeded",
        Ok(_) => "function_error",
        Err(Error::TooManyRequests(_)) => "throttled",
        Err(_) => "error",
    };
    metrics::counter!(
        "nimbus_invocations_total",
        "function" => name.as_str().to_owned(),
        "type" => "RequestResponse",
        "outcome" => outcome,
    )
    .increment(1);
    metrics::histogram!("nimbus_invocation_duration_seconds", "type" => "RequestResponse")
        .record(took.as_secs_f64());
}

fn respond(outcome: InvokeOutcome, want_log_tail: bool) -> Result<Response, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        EXECUTED_VERSION,
        HeaderValue::try_from(outcome.executed_version.as_str()).map_err(|_| {
            Error::Service(format!(
                "the invoker reported an executed version that is no header value: {:?}",
                outcome.executed_version
            ))
        })?,
    );
    if let Some(function_error) = outcome.function_error {
        headers.insert(
            FUNCTION_ERROR,
            HeaderValue::from_static(function_error.as_str()),
        );
    }
    if want_log_tail {
        let log = outcome.log_tail.as_deref().unwrap_or_default();
        // Base64 is always a valid header value.
        if let Ok(value) = HeaderValue::try_from(BASE64.encode(log)) {
            headers.insert(LOG_RESULT, value);
        }
    }
    Ok((StatusCode::OK, headers, Body::from(outcome.payload)).into_response())
}

impl InvokeOptions {
    pub(crate) fn parse(headers: &HeaderMap) -> Result<Self, Error> {
        let invocation_type = match text(headers, &INVOCATION_TYPE)? {
            Some(value) => value.parse()?,
            None => InvocationType::RequestResponse,
        };
        let want_log_tail = match text(headers, &LOG_TYPE)? {
            None | Some("None") => false,
            Some("Tail") => true,
            Some(other) => {
                return Err(Error::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{other}' at 'logType' failed to \
                     satisfy constraint: Member must satisfy enum value set: [Tail, None]"
                )));
            }
        };
        let client_context = text(headers, &CLIENT_CONTEXT)?
            .map(decode_client_context)
            .transpose()?;
        // The function sees the caller's X-Ray header, else this invocation's W3C trace (or,
        // when spans are not traced, the caller's) in X-Ray form.
        let trace_id = match text(headers, &TRACE_ID)? {
            Some(xray) => Some(xray.to_owned()),
            None => nimbus_telemetry::trace::current_traceparent()
                .or_else(|| trace_context(headers))
                .as_deref()
                .and_then(nimbus_core::trace::xray_from_traceparent),
        };
        Ok(Self {
            invocation_type,
            want_log_tail,
            client_context,
            trace_id,
        })
    }
}

fn text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Error> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                Error::InvalidParameterValue(format!("Header {name} must be visible ASCII"))
            })
        })
        .transpose()
}

/// `X-Amz-Client-Context`: base64 of a JSON object, at most 3583 bytes once decoded.
fn decode_client_context(encoded: &str) -> Result<String, Error> {
    let invalid = || {
        Error::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".to_owned(),
        )
    };
    let decoded = BASE64.decode(encoded).map_err(|_| invalid())?;
    if decoded.len() > limits::MAX_CLIENT_CONTEXT_BYTES {
        return Err(Error::InvalidParameterValue(format!(
            "Client context must be at most {} bytes once decoded",
            limits::MAX_CLIENT_CONTEXT_BYTES
        )));
    }
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&decoded)
        .map_err(|_| invalid())?;
    String::from_utf8(decoded).map_err(|_| invalid())
}

/// The payload must be JSON in UTF-8, nested at most [`limits::MAX_PAYLOAD_NESTING`] deep; no
/// payload means `{}`. serde_json skips a document without checking its strings' UTF-8 or
/// bounding its depth, so both are checked here: what passes, every runtime can parse.
pub(crate) fn checked_payload(payload: Bytes) -> Result<Bytes, Error> {
    if payload.is_empty() {
        return Ok(Bytes::from_static(b"{}"));
    }
    let invalid = |why: String| {
        Error::InvalidRequestContent(format!("Could not parse request body into json: {why}"))
    };
    let text = std::str::from_utf8(&payload)
        .map_err(|e| invalid(format!("the body is not UTF-8 ({e})")))?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| invalid(e.to_string()))?;
    if nesting_depth(text.as_bytes()) > limits::MAX_PAYLOAD_NESTING {
        return Err(invalid(format!(
            "it is nested deeper than {} levels",
            limits::MAX_PAYLOAD_NESTING
        )));
    }
    Ok(payload)
}

/// How deep the arrays and objects of a well-formed JSON document nest.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn record_of(
    request_id: RequestId,
    function_name: FunctionName,
    function_version: String,
    created_at: OffsetDateTime,
    finished_at: OffsetDateTime,
    result: &Result<InvokeOutcome, Error>,
) -> InvocationRecord {
    let mut record = InvocationRecord {
        request_id,
        function_name,
        function_version,
        invocation_type: InvocationType::RequestResponse,
        status: InvocationStatus::Succeeded,
        attempts: 1,
        created_at,
        started_at: None,
        finished_at: Some(finished_at),
        duration_ms: None,
        error_type: None,
        error_message: None,
        // A synchronous invocation is its one attempt; the history is for events.
        attempt_history: Vec::new(),
        redrive_of: None,
    };
    match result {
        Ok(outcome) => {
            record
                .function_version
                .clone_from(&outcome.executed_version);
            record.started_at = Some(started_at(created_at, finished_at, outcome.duration));
            record.duration_ms = Some(outcome.duration.as_secs_f64() * 1000.0);
            if outcome.function_error.is_some() {
                record.status = InvocationStatus::Failed;
                (record.error_type, record.error_message) = outcome.error_details();
            }
        }
        Err(error) => {
            record.status = InvocationStatus::Failed;
            record.error_type = Some(error.lambda_type().to_owned());
            record.error_message = Some(error.public_message());
        }
    }
    record
}

/// The function ran for `duration` and finished by `finished_at`; the gateway does not see
/// the moment it started, so it is counted back, never before the request arrived.
fn started_at(
    created_at: OffsetDateTime,
    finished_at: OffsetDateTime,
    duration: Duration,
) -> OffsetDateTime {
    let duration = time::Duration::try_from(duration).unwrap_or(time::Duration::ZERO);
    (finished_at - duration).max(created_at)
}

#[cfg(test)]
mod tests {
    use nimbus_core::FunctionError;
    use nimbus_core::error::ThrottleReason;
    use nimbus_core::function::LATEST;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn headers_default_to_a_plain_sync_invoke() {
        let options = InvokeOptions::parse(&HeaderMap::new()).unwrap();
        assert_eq!(options.invocation_type, InvocationType::RequestResponse);
        assert!(!options.want_log_tail);
        assert!(options.client_context.is_none());
    }

    #[test]
    fn bad_headers_are_refused() {
        for pairs in [
            [("x-amz-invocation-type", "Sync")],
            [("x-amz-log-type", "Full")],
            [("x-amz-client-context", "not base64!")],
            [("x-amz-client-context", "WzFd")], // [1]: JSON but no object
        ] {
            assert!(InvokeOptions::parse(&headers(&pairs)).is_err(), "{pairs:?}");
        }
    }

    #[test]
    fn client_context_is_decoded() {
        let encoded = BASE64.encode(r#"{"custom":{"a":1}}"#);
        let options =
            InvokeOptions::parse(&headers(&[("x-amz-client-context", &encoded)])).unwrap();
        assert_eq!(
            options.client_context.as_deref(),
            Some(r#"{"custom":{"a":1}}"#)
        );
        let big = BASE64.encode(format!(r#"{{"a":"{}"}}"#, "x".repeat(4000)));
        assert!(matches!(
            decode_client_context(&big),
            Err(Error::InvalidParameterValue(_))
        ));
    }

    #[test]
    fn payloads_must_be_json() {
        assert_eq!(checked_payload(Bytes::new()).unwrap(), "{}");
        assert_eq!(checked_payload(Bytes::from("[1]")).unwrap(), "[1]");
        assert!(matches!(
            checked_payload(Bytes::from("{nope")),
            Err(Error::InvalidRequestContent(_))
        ));
    }

    #[test]
    fn payloads_must_be_utf8() {
        for body in [
            &b"\"\xff\""[..],
            b"{\"a\":\"\xc3\x28\"}",
            b"[\"\xed\xa0\x80\"]",
        ] {
            assert!(
                matches!(
                    checked_payload(Bytes::copy_from_slice(body)),
                    Err(Error::InvalidRequestContent(_))
                ),
                "{body:?}"
            );
        }
        assert!(checked_payload(Bytes::from("{\"a\":\"é\"}")).is_ok());
    }

    #[test]
    fn payloads_nest_within_the_limit() {
        let nested =
            |depth: usize| Bytes::from(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        assert!(checked_payload(nested(limits::MAX_PAYLOAD_NESTING)).is_ok());
        for depth in [limits::MAX_PAYLOAD_NESTING + 1, 100_000] {
            assert!(
                matches!(
                    checked_payload(nested(depth)),
                    Err(Error::InvalidRequestContent(_))
                ),
                "{depth}"
            );
        }
        // Brackets inside strings, escaped quotes included, are text.
        let quoted = format!(r#"["{}\"{}"]"#, "[".repeat(500), "{".repeat(500));
        assert!(checked_payload(Bytes::from(quoted)).is_ok());
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"]]]"}],"c":{}}"#), 3);
    }

    fn outcome(payload: &str, function_error: Option<FunctionError>) -> InvokeOutcome {
        InvokeOutcome {
            payload: Bytes::from(payload.to_owned()),
            function_error,
            error_type: None,
            executed_version: LATEST.to_owned(),
            duration: Duration::from_millis(12),
            init_duration: None,
            max_memory_used_mb: 10,
            log_tail: None,
        }
    }

    fn record(result: &Result<InvokeOutcome, Error>) -> InvocationRecord {
        let now = OffsetDateTime::now_utc();
        record_of(
            RequestId::new(),
            FunctionName::parse("f").unwrap(),
            LATEST.to_owned(),
            now,
            now + time::Duration::milliseconds(20),
            result,
        )
    }

    #[test]
    fn records_say_how_the_invocation_ended() {
        let ok = record(&Ok(outcome("{}", None)));
        assert_eq!(ok.status, InvocationStatus::Succeeded);
        assert_eq!(ok.duration_ms, Some(12.0));
        assert!(ok.started_at.unwrap() >= ok.created_at);

        let failed = record(&Ok(outcome(
            r#"{"errorMessage":"boom","errorType":"ValueError"}"#,
            Some(FunctionError::Unhandled),
        )));
        assert_eq!(failed.status, InvocationStatus::Failed);
        assert_eq!(failed.error_type.as_deref(), Some("ValueError"));
        assert_eq!(failed.error_message.as_deref(), Some("boom"));

        let throttled = record(&Err(Error::TooManyRequests(
            ThrottleReason::FunctionConcurrency,
        )));
        assert_eq!(throttled.status, InvocationStatus::Failed);
        assert_eq!(
            throttled.error_type.as_deref(),
            Some("TooManyRequestsException")
        );
        assert!(throttled.started_at.is_none());
    }
}
