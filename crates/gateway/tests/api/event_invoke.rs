//! `Invoke` with `X-Amz-Invocation-Type: Event`: checked, queued, answered `202`, recorded.

use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::harness::{Answer, BrokenQueue, FUNCTIONS, Gateway};

const LIMIT: usize = nimbus_core::limits::MAX_ASYNC_PAYLOAD_BYTES;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn invocations(name: &str) -> String {
    format!("{FUNCTIONS}/{name}/invocations")
}

async fn invoke_event(
    gateway: &Gateway,
    name: &str,
    headers: &[(&str, &str)],
    payload: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = gateway
        .http
        .post(gateway.url(&invocations(name)))
        .header("x-amz-invocation-type", "Event")
        .body(payload);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    gateway.send(request).await
}

async fn record(gateway: &Gateway, request_id: &str) -> Answer {
    gateway
        .get(&format!("/nimbus/v1/invocations/{request_id}"))
        .await
}

#[tokio::test]
async fn an_event_is_queued_answered_202_and_recorded_as_queued() {
    let gateway = Gateway::start().await;
    gateway.create("echo").await;

    let answer = invoke_event(
        &gateway,
        "echo",
        &[
            ("traceparent", TRACEPARENT),
            (
                "x-nimbus-callback-url",
                "https://hooks.example.com/done?x=1",
            ),
        ],
        r#"{"order": 42}"#,
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert!(answer.body.is_empty(), "{}", answer.text());
    assert_eq!(answer.header("content-length"), Some("0"));
    assert_eq!(answer.header("x-amz-function-error"), None);

    // The record answers at once, before any worker has seen the event.
    let queued = record(&gateway, &answer.request_id).await;
    assert_eq!(queued.status, 200, "{}", queued.text());
    let queued = queued.json();
    assert_eq!(queued["requestId"], answer.request_id.as_str());
    assert_eq!(queued["functionName"], "echo");
    assert_eq!(queued["functionVersion"], "$LATEST");
    assert_eq!(queued["invocationType"], "Event");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["attempts"], 0);
    assert_eq!(queued["attemptHistory"], serde_json::json!([]));
    assert!(queued["redriveOf"].is_null());
    assert!(queued["startedAt"].is_null() && queued["finishedAt"].is_null());

    let events = gateway.take_queued().await;
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.request_id.to_string(), answer.request_id);
    assert_eq!(event.function_name.as_str(), "echo");
    assert_eq!(event.qualifier, "$LATEST");
    assert_eq!(event.payload, r#"{"order": 42}"#);
    assert_eq!(event.trace_context.as_deref(), Some(TRACEPARENT));
    assert_eq!(
        event.callback_url.as_deref(),
        Some("https://hooks.example.com/done?x=1")
    );
    assert!(event.attempts.is_empty());
    assert!(event.redrive_of.is_none());
    let created_at =
        OffsetDateTime::parse(queued["createdAt"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!((created_at - event.enqueued_at).abs() < time::Duration::milliseconds(1));
    // Nothing ran synchronously.
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn an_event_by_arn_with_log_tail_is_accepted_and_the_tail_ignored() {
    let gateway = Gateway::start().await;
    let created = gateway.create("tail").await;
    let arn = created["FunctionArn"].as_str().unwrap().to_owned();

    let answer = invoke_event(
        &gateway,
        &format!("{arn}:$LATEST"),
        &[("x-amz-log-type", "Tail")],
        "",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_eq!(answer.header("x-amz-log-result"), None);
    let events = gateway.take_queued().await;
    assert_eq!(events.len(), 1);
    // No payload means an empty object; no traceparent, no callback.
    assert_eq!(events[0].payload, "{}");
    assert!(events[0].trace_context.is_none());
    assert!(events[0].callback_url.is_none());
}

#[tokio::test]
async fn an_event_for_a_missing_function_is_404_and_nothing_is_queued() {
    let gateway = Gateway::start().await;
    invoke_event(&gateway, "ghost", &[], "{}")
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway.create("real").await;
    // Versions do not exist yet: any qualifier but $LATEST names a missing function.
    invoke_event(&gateway, "real:v1", &[], "{}")
        .await
        .assert_error(404, "ResourceNotFoundException");
    let answer = gateway
        .send(
            gateway
                .http
                .post(gateway.url(&format!("{}?Qualifier=2", invocations("real"))))
                .header("x-amz-invocation-type", "Event")
                .body("{}"),
        )
        .await;
    answer.assert_error(404, "ResourceNotFoundException");
    assert_eq!(gateway.queued().await, 0);
}

#[tokio::test]
async fn a_declared_oversized_event_is_refused_unread() {
    let gateway = Gateway::start().await;
    gateway.create("big").await;
    // Only the head is sent: a gateway that waited for the body would never answer.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: nimbus\r\nx-amz-invocation-type: Event\r\n\
         content-length: {}\r\n\r\n",
        invocations("big"),
        LIMIT + 1
    );
    let answer = gateway.raw(&head, b"").await;
    let message = answer.assert_error(413, "RequestTooLargeException");
    assert_eq!(
        message,
        format!("Request must be smaller than {LIMIT} bytes for the InvokeFunction operation")
    );
    // Even for a function that does not exist: the size is checked first.
    let head = head.replace("/big/", "/ghost/");
    gateway
        .raw(&head, b"")
        .await
        .assert_error(413, "RequestTooLargeException");
    assert_eq!(gateway.queued().await, 0);
}

#[tokio::test]
async fn a_streamed_oversized_event_is_cut_off_at_the_limit() {
    let gateway = Gateway::start().await;
    gateway.create("stream").await;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: nimbus\r\nx-amz-invocation-type: Event\r\n\
         transfer-encoding: chunked\r\n\r\n",
        invocations("stream")
    );
    // LIMIT + 1 bytes and no final chunk: the gateway can only answer by stopping.
    let chunk = vec![b' '; 16 * 1024];
    let mut body = Vec::new();
    let mut sent = 0;
    while sent <= LIMIT {
        let size = chunk.len().min(LIMIT + 1 - sent);
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend_from_slice(&chunk[..size]);
        body.extend_from_slice(b"\r\n");
        sent += size;
    }
    gateway
        .raw(&head, &body)
        .await
        .assert_error(413, "RequestTooLargeException");
    assert_eq!(gateway.queued().await, 0);
}

#[tokio::test]
async fn an_event_at_the_limit_is_accepted_and_one_byte_more_is_not() {
    let gateway = Gateway::start().await;
    gateway.create("full").await;
    let payload = format!("\"{}\"", "x".repeat(LIMIT - 2));
    let answer = invoke_event(&gateway, "full", &[], payload.clone()).await;
    assert_eq!(answer.status, 202, "{}", answer.text());
    let over = format!("\"{}\"", "x".repeat(LIMIT - 1));
    invoke_event(&gateway, "full", &[], over)
        .await
        .assert_error(413, "RequestTooLargeException");
    let events = gateway.take_queued().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload.len(), LIMIT);
}

#[tokio::test]
async fn an_event_payload_that_is_not_json_is_refused() {
    let gateway = Gateway::start().await;
    gateway.create("strict").await;
    let message = invoke_event(&gateway, "strict", &[], "hello there")
        .await
        .assert_error(400, "InvalidRequestContentException");
    assert!(message.starts_with("Could not parse request body into json"));
    assert_eq!(gateway.queued().await, 0);
}

#[tokio::test]
async fn a_callback_url_must_be_an_absolute_http_url() {
    let gateway = Gateway::start().await;
    gateway.create("hooked").await;
    for url in [
        "ftp://example.com/x",
        "/relative/path",
        "example.com/no-scheme",
        "http://",
        "not a url",
        "javascript:alert(1)",
    ] {
        let message = invoke_event(&gateway, "hooked", &[("x-nimbus-callback-url", url)], "{}")
            .await
            .assert_error(400, "InvalidParameterValueException");
        assert!(
            message.contains("X-Nimbus-Callback-Url"),
            "{url}: {message}"
        );
    }
    assert_eq!(gateway.queued().await, 0);
    let answer = invoke_event(
        &gateway,
        "hooked",
        &[("x-nimbus-callback-url", "http://127.0.0.1:8080/cb")],
        "{}",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.text());
}

#[tokio::test]
async fn a_malformed_traceparent_is_dropped_not_refused() {
    let gateway = Gateway::start().await;
    gateway.create("traced").await;
    for traceparent in [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ] {
        let answer = invoke_event(&gateway, "traced", &[("traceparent", traceparent)], "{}").await;
        assert_eq!(answer.status, 202, "{}", answer.text());
    }
    let events = gateway.take_queued().await;
    assert_eq!(events.len(), 4);
    assert!(events.iter().all(|e| e.trace_context.is_none()));
}

#[tokio::test]
async fn a_queue_failure_is_a_service_error_and_leaves_no_record() {
    let gateway = Gateway::start_with_queue(Arc::new(BrokenQueue)).await;
    gateway.create("unlucky").await;
    let answer = invoke_event(&gateway, "unlucky", &[], "{}").await;
    assert_eq!(answer.status, 500, "{}", answer.text());
    assert_eq!(answer.header("x-amzn-ErrorType"), Some("ServiceException"));
    let body: Value = answer.json();
    assert_eq!(body["Type"], "Service");
    assert!(
        !answer.text().contains("queue is down"),
        "{}",
        answer.text()
    );
    record(&gateway, &answer.request_id)
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert_eq!(gateway.invoker.calls(), 0);
}
