//! `Invoke` and the invocation records it leaves, over real HTTP.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::harness::{FUNCTIONS, Gateway, base64};

const LIMIT: usize = nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES;

fn invocations(name: &str) -> String {
    format!("{FUNCTIONS}/{name}/invocations")
}

async fn record(gateway: &Gateway, request_id: &str) -> Value {
    let answer = gateway
        .get(&format!("/nimbus/v1/invocations/{request_id}"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn is_rfc3339(value: &Value) -> bool {
    value.as_str().is_some_and(|text| {
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

#[tokio::test]
async fn a_sync_invoke_returns_the_functions_answer_and_leaves_a_record() {
    let gateway = Gateway::start().await;
    gateway.create("echo").await;

    let answer = gateway.invoke("echo", r#"{"greeting":"hi"}"#).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json(), json!({"greeting": "hi"}));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("x-amz-executed-version"), Some("$LATEST"));
    assert_eq!(answer.header("x-amz-function-error"), None);
    assert_eq!(answer.header("x-amz-log-result"), None);

    // The function ran under the id the caller got back.
    let request = gateway.invoker.last();
    assert_eq!(request.request_id.to_string(), answer.request_id);
    assert_eq!(request.function.name.as_str(), "echo");
    assert_eq!(request.function.handler.as_deref(), Some("index.handler"));
    assert!(!request.want_log_tail);
    assert!(request.client_context.is_none());

    let record = record(&gateway, &answer.request_id).await;
    assert_eq!(record["requestId"], answer.request_id.as_str());
    assert_eq!(record["functionName"], "echo");
    assert_eq!(record["functionVersion"], "$LATEST");
    assert_eq!(record["invocationType"], "RequestResponse");
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["durationMs"], 7.0);
    assert!(record["errorType"].is_null());
    for at in ["createdAt", "startedAt", "finishedAt"] {
        assert!(is_rfc3339(&record[at]), "{at}: {record}");
    }
}

#[tokio::test]
async fn an_empty_payload_is_an_empty_object() {
    let gateway = Gateway::start().await;
    gateway.create("empty").await;
    let answer = gateway.invoke("empty", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "{}");
    assert_eq!(gateway.invoker.last().payload, "{}");
}

#[tokio::test]
async fn a_payload_that_is_not_json_is_refused() {
    let gateway = Gateway::start().await;
    gateway.create("strict").await;
    let answer = gateway.invoke("strict", "hello there").await;
    let message = answer.assert_error(400, "InvalidRequestContentException");
    assert!(
        message.starts_with("Could not parse request body into json"),
        "{message}"
    );
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn a_declared_oversized_payload_is_refused_before_it_is_sent() {
    let gateway = Gateway::start().await;
    gateway.create("big").await;
    // Only the head goes out; the gateway must answer without waiting for the body.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: nimbus\r\ncontent-length: {}\r\n\r\n",
        invocations("big"),
        LIMIT + 1
    );
    let answer = gateway.raw(&head, b"").await;
    let message = answer.assert_error(413, "RequestTooLargeException");
    assert_eq!(
        message,
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
    );
    // The unread body is still on the connection: the client must not reuse it.
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn a_streamed_oversized_payload_is_cut_off_at_the_limit() {
    let gateway = Gateway::start().await;
    gateway.create("stream").await;
    // A chunked body with no declared length: limit + 1 bytes, and no final chunk, so the
    // gateway can answer only by stopping at the limit.
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: nimbus\r\ntransfer-encoding: chunked\r\n\r\n",
        invocations("stream")
    );
    let chunk = vec![b' '; 64 * 1024];
    let mut body = Vec::with_capacity(LIMIT + 64 * 1024);
    let mut sent = 0;
    while sent <= LIMIT {
        let size = chunk.len().min(LIMIT + 1 - sent);
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend_from_slice(&chunk[..size]);
        body.extend_from_slice(b"\r\n");
        sent += size;
    }
    let answer = gateway.raw(&head, &body).await;
    answer.assert_error(413, "RequestTooLargeException");
    assert_eq!(gateway.invoker.calls(), 0);
}

#[tokio::test]
async fn a_payload_at_the_limit_is_accepted() {
    let gateway = Gateway::start().await;
    gateway.create("full").await;
    let payload = format!("\"{}\"", "x".repeat(LIMIT - 2));
    let answer = gateway
        .send(
            gateway
                .http
                .post(gateway.url(&invocations("full")))
                .body(payload),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body.len(), LIMIT);
}

#[tokio::test]
async fn a_dry_run_checks_without_invoking() {
    let gateway = Gateway::start().await;
    gateway.create("dry").await;
    let dry_run = |name: &str, payload: &'static str| {
        gateway.send(
            gateway
                .http
                .post(gateway.url(&invocations(name)))
                .header("X-Amz-Invocation-Type", "DryRun")
                .body(payload),
        )
    };
    let answer = dry_run("dry", r#"{"a":1}"#).await;
    assert_eq!(answer.status, 204);
    assert!(answer.body.is_empty());
    dry_run("missing", "{}")
        .await
        .assert_error(404, "ResourceNotFoundException");
    dry_run("dry", "{")
        .await
        .assert_error(400, "InvalidRequestContentException");
    assert_eq!(gateway.invoker.calls(), 0);
    // A dry run leaves no record.
    gateway
        .get(&format!("/nimbus/v1/invocations/{}", answer.request_id))
        .await
        .assert_error(404, "ResourceNotFoundException");
}

#[tokio::test]
async fn a_tail_returns_the_log_in_base64() {
    let gateway = Gateway::start().await;
    gateway.create("logged").await;
    let answer = gateway
        .send(
            gateway
                .http
                .post(gateway.url(&invocations("logged")))
                .header("X-Amz-Log-Type", "Tail")
                .body("{}"),
        )
        .await;
    assert_eq!(answer.status, 200);
    let log = base64::engine::general_purpose::STANDARD
        .decode(answer.header("x-amz-log-result").unwrap())
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    assert!(
        log.starts_with(&format!("START RequestId: {}", answer.request_id)),
        "{log}"
    );
    assert!(gateway.invoker.last().want_log_tail);

    gateway
        .send(
            gateway
                .http
                .post(gateway.url(&invocations("logged")))
                .header("X-Amz-Log-Type", "Everything")
                .body("{}"),
        )
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn the_client_context_reaches_the_function() {
    let gateway = Gateway::start().await;
    gateway.create("mobile").await;
    let context = r#"{"custom":{"user":"ada"},"env":{"locale":"en"}}"#;
    let with_context = |encoded: String| {
        gateway.send(
            gateway
                .http
                .post(gateway.url(&invocations("mobile")))
                .header("X-Amz-Client-Context", encoded)
                .body("{}"),
        )
    };
    let answer = with_context(base64(context.as_bytes())).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        gateway.invoker.last().client_context.as_deref(),
        Some(context)
    );

    for invalid in ["%%%".to_owned(), base64(b"not json"), base64(b"[1,2]")] {
        let message = with_context(invalid)
            .await
            .assert_error(400, "InvalidRequestContentException");
        assert_eq!(
            message,
            "Client context must be a valid Base64-encoded JSON object."
        );
    }
    let too_big = format!(r#"{{"custom":"{}"}}"#, "x".repeat(4000));
    with_context(base64(too_big.as_bytes()))
        .await
        .assert_error(400, "InvalidParameterValueException");
    assert_eq!(gateway.invoker.calls(), 1);
}

#[tokio::test]
async fn a_function_error_is_a_200_with_the_error_document() {
    let gateway = Gateway::start().await;
    gateway.create("fail-always").await;
    let answer = gateway.invoke("fail-always", "{}").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        answer.json(),
        json!({"errorMessage": "the function failed", "errorType": "ValueError"})
    );
    let record = record(&gateway, &answer.request_id).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["errorType"], "ValueError");
    assert_eq!(record["errorMessage"], "the function failed");
}

#[tokio::test]
async fn a_throttle_is_a_429_with_its_reason_and_a_failed_record() {
    let gateway = Gateway::start().await;
    gateway.create("throttle-me").await;
    let answer = gateway.invoke("throttle-me", "{}").await;
    assert_eq!(answer.status, 429);
    assert_eq!(
        answer.header("x-amzn-ErrorType"),
        Some("TooManyRequestsException")
    );
    let body = answer.json();
    assert_eq!(body["Type"], "User");
    assert_eq!(
        body["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    assert_eq!(body["message"], "Rate Exceeded.");

    let record = record(&gateway, &answer.request_id).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["errorType"], "TooManyRequestsException");
    assert_eq!(record["attempts"], 1);
}

#[tokio::test]
async fn functions_are_invoked_by_arn() {
    let gateway = Gateway::start().await;
    gateway.create("arned").await;
    for reference in [
        "arn:aws:lambda:us-east-1:000000000000:function:arned",
        "arn:aws:lambda:us-east-1:000000000000:function:arned:%24LATEST",
        "000000000000:function:arned",
    ] {
        let answer = gateway.invoke(reference, r#"{"n":1}"#).await;
        assert_eq!(answer.status, 200, "{reference}: {}", answer.text());
        assert_eq!(answer.json(), json!({"n": 1}));
    }
    gateway
        .invoke("arned:7", "{}")
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .invoke("nobody", "{}")
        .await
        .assert_error(404, "ResourceNotFoundException");
    assert_eq!(gateway.invoker.calls(), 3);
}

#[tokio::test]
async fn an_unknown_invocation_type_is_refused() {
    let gateway = Gateway::start().await;
    gateway.create("later").await;
    gateway
        .send(
            gateway
                .http
                .post(gateway.url(&invocations("later")))
                .header("X-Amz-Invocation-Type", "Whenever")
                .body("{}"),
        )
        .await
        .assert_error(400, "InvalidParameterValueException");
    assert_eq!(gateway.invoker.calls(), 0);
    assert_eq!(gateway.queued().await, 0);
}

#[tokio::test]
async fn records_are_looked_up_by_a_well_formed_id() {
    let gateway = Gateway::start().await;
    gateway
        .get(&format!(
            "/nimbus/v1/invocations/{}",
            nimbus_core::RequestId::new()
        ))
        .await
        .assert_error(404, "ResourceNotFoundException");
    gateway
        .get("/nimbus/v1/invocations/not-an-id")
        .await
        .assert_error(400, "InvalidParameterValueException");
}

#[tokio::test]
async fn an_error_answered_before_the_body_is_read_closes_the_connection() {
    let gateway = Gateway::start().await;
    gateway.create("here").await;
    // Unknown function: answered before the payload is read, so the connection must go.
    let missing = gateway.invoke("missing", "{}").await;
    missing.assert_error(404, "ResourceNotFoundException");
    assert_eq!(missing.header("connection"), Some("close"));
    // A served request keeps its connection for the next one.
    let served = gateway.invoke("here", "{}").await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.header("connection"), None);
    // A bodiless request's error leaves nothing unread.
    let listed = gateway.get(&format!("{FUNCTIONS}/missing")).await;
    listed.assert_error(404, "ResourceNotFoundException");
    assert_eq!(listed.header("connection"), None);
}
