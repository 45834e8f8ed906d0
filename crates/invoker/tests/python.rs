//! The Python runtime on real interpreter processes: what a handler sees, how its errors,
//! timeouts and crashes come back, and what its log holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{
    PYTHON_APP, eventually, exists, failed, fixture, function, python, request, running, succeeded,
};
use serde_json::{Value, json};

#[tokio::test]
async fn a_handler_sees_its_event_context_and_environment() {
    let f = fixture(|c| c.region = "eu-west-1".to_owned()).await;
    let mut echo = python(&*f.store, "echo", "app.echo").await;
    echo.environment = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
    echo.memory_mb = 256;
    echo.timeout_secs = 7;
    let mut call = request(&echo, json!({"n": 1, "nested": {"ok": true}}));
    call.trace_id = Some("Root=1-5e1b4151-5ac6c58f5b5daa6532e4f6e8;Sampled=1".to_owned());
    call.client_context = Some(r#"{"custom": {"tenant": "acme"}, "env": {}}"#.to_owned());
    let id = call.request_id.to_string();
    let outcome = f.invoke(call).await;
    let body = succeeded(&outcome);

    assert_eq!(body["event"], json!({"n": 1, "nested": {"ok": true}}));
    assert_eq!(body["request_id"], json!(id));
    assert_eq!(body["function_name"], json!("echo"));
    assert_eq!(body["function_version"], json!("$LATEST"));
    assert_eq!(
        body["arn"],
        json!("arn:aws:lambda:eu-west-1:000000000000:function:echo")
    );
    assert_eq!(body["memory"], json!("256"));
    assert_eq!(body["log_group"], json!("/aws/lambda/echo"));
    assert!(body["log_stream"].as_str().unwrap().contains("[$LATEST]"));
    let remaining = body["remaining_ms"].as_u64().unwrap();
    assert!(remaining > 5_000 && remaining <= 7_000, "{remaining}");
    assert_eq!(body["client_custom"], json!({"tenant": "acme"}));
    assert_eq!(body["identity"], Value::Null);
    assert_eq!(body["greeting"], json!("hi"));
    assert_eq!(
        body["trace_id"],
        json!("Root=1-5e1b4151-5ac6c58f5b5daa6532e4f6e8;Sampled=1")
    );
    assert_eq!(body["execution_env"], json!("AWS_Lambda_python3.11"));
    assert_eq!(body["region"], json!("eu-west-1"));
    assert_eq!(body["cwd"], body["task_root"]);
    let tmpdir = body["tmpdir"].as_str().unwrap();
    assert!(
        tmpdir.starts_with(f.dir.path().to_str().unwrap()),
        "{tmpdir}"
    );
    assert_eq!(outcome.executed_version, "$LATEST");
    assert!(outcome.init_duration.is_some());

    // The next invocation on the same instance has no trace id of its own.
    let body = succeeded(&f.invoke(request(&echo, json!({}))).await);
    assert_eq!(body["trace_id"], Value::Null);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn an_exception_becomes_an_error_document() {
    let f = fixture(|_| {}).await;
    let fail = python(&*f.store, "fail", "app.fail").await;
    let call = request(&fail, json!({"x": 7}));
    let id = call.request_id.to_string();
    let outcome = f.invoke(call).await;
    let body = failed(&outcome);
    assert_eq!(outcome.error_type.as_deref(), Some("BadInput"));
    assert_eq!(body["errorType"], json!("BadInput"));
    assert_eq!(body["errorMessage"], json!("bad input: 7"));
    assert_eq!(body["requestId"], json!(id));
    let trace = body["stackTrace"].as_array().unwrap();
    assert!(!trace.is_empty());
    assert!(
        trace
            .iter()
            .all(|frame| !frame.as_str().unwrap().contains("bootstrap.py")),
        "the runtime's frames are not the function's: {trace:?}"
    );
    assert!(trace.last().unwrap().as_str().unwrap().contains("in fail"));

    // A handled error leaves the instance warm.
    f.invoke(request(&fail, json!({}))).await;
    assert_eq!(f.invoker.stats().instances_started, 1);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn init_failures_are_reported_as_lambda_does() {
    let f = fixture(|_| {}).await;
    let cases = [
        (
            "nomod",
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "nohandler",
            "app.nothing",
            "Runtime.HandlerNotFound",
            "Handler 'nothing' missing on module 'app'",
        ),
        (
            "syntax",
            "broken.handler",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'broken'",
        ),
    ];
    for (name, handler, error_type, message) in cases {
        let function = function(
            &*f.store,
            name,
            "python3.11",
            Some(handler),
            &[("app.py", PYTHON_APP), ("broken.py", "def handler(:\n")],
        )
        .await;
        let mut call = request(&function, json!({}));
        call.want_log_tail = true;
        let outcome = f.invoke(call).await;
        let body = failed(&outcome);
        assert_eq!(body["errorType"], json!(error_type), "{body}");
        assert!(
            body["errorMessage"].as_str().unwrap().starts_with(message),
            "{body}"
        );
        assert_eq!(outcome.error_type.as_deref(), Some(error_type));
        assert!(outcome.log_tail.unwrap().contains(error_type));
    }
    // Failed instances are retired, not kept warm.
    assert_eq!(f.invoker.stats().warm, 0);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let f = fixture(|_| {}).await;
    let mut slow = python(&*f.store, "slow", "app.slow").await;
    slow.timeout_secs = 1;
    let pidfile = f.dir.path().join("slow.pid");
    let mut call = request(&slow, json!({ "pidfile": pidfile }));
    call.want_log_tail = true;
    let id = call.request_id;
    let outcome = f.invoke(call).await;
    let body = failed(&outcome);
    assert_eq!(
        body,
        json!({
            "errorType": "Sandbox.Timedout",
            "errorMessage": format!("RequestId: {id} Error: Task timed out after 1.00 seconds"),
        })
    );
    assert_eq!(outcome.error_type.as_deref(), Some("Sandbox.Timedout"));
    let tail = outcome.log_tail.unwrap();
    assert!(tail.contains("Task timed out after 1.00 seconds"), "{tail}");
    assert!(tail.contains(&format!("END RequestId: {id}")), "{tail}");

    // The handler's own child, in the instance's process group, died with it.
    let sleeper: u64 = std::fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    eventually("the sleep child's death", || !running(sleeper)).await;
    let stats = f.invoker.stats();
    assert_eq!((stats.warm, stats.busy), (0, 0));
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_crash_is_an_exit_error_and_the_instance_is_replaced() {
    let f = fixture(|_| {}).await;
    let crashy = python(&*f.store, "crashy", "app.pid_or_crash").await;
    let before: u64 = serde_json::from_value(f.call(&crashy, json!({})).await.0).unwrap();

    let mut call = request(&crashy, json!({"crash": true}));
    call.want_log_tail = true;
    let id = call.request_id;
    let outcome = f.invoke(call).await;
    let body = failed(&outcome);
    assert_eq!(body["errorType"], json!("Runtime.ExitError"));
    assert_eq!(
        body["errorMessage"],
        json!(format!(
            "RequestId: {id} Error: Runtime exited with error: exit status 3"
        ))
    );
    let tail = outcome.log_tail.unwrap();
    assert!(tail.contains("about to crash"), "{tail}");
    assert!(!exists(before), "the crashed instance was reaped");

    let after: u64 = serde_json::from_value(f.call(&crashy, json!({})).await.0).unwrap();
    assert_ne!(after, before);
    f.invoker.shutdown().await;
    assert!(!exists(after), "shutdown reaps every instance");
}

#[tokio::test]
async fn logs_are_framed_like_lambda_and_init_duration_is_only_on_cold_starts() {
    let f = fixture(|_| {}).await;
    let words = python(&*f.store, "words", "app.last_words").await;
    for n in 0..30 {
        let mut call = request(&words, json!({ "n": n }));
        call.want_log_tail = true;
        let id = call.request_id;
        let outcome = f.invoke(call).await;
        assert_eq!(succeeded(&outcome), json!(n));
        let tail = outcome.log_tail.unwrap();
        let lines: Vec<&str> = tail.lines().collect();
        let start = format!("START RequestId: {id} Version: $LATEST");
        let at = lines.iter().position(|l| *l == start).expect(&tail);
        // A line printed right before the handler returns is always there, before END.
        assert_eq!(lines[at + 1], format!("last words {n}"), "{tail}");
        assert_eq!(lines[at + 2], format!("END RequestId: {id}"));
        let report = lines[at + 3];
        assert!(report.starts_with(&format!("REPORT RequestId: {id}\tDuration: ")));
        assert!(report.contains(" ms\tBilled Duration: "), "{report}");
        assert!(report.contains("\tMemory Size: 128 MB\tMax Memory Used: "));
        assert!(!report.contains("Max Memory Used: 0 MB"), "{report}");
        assert_eq!(report.contains("\tInit Duration: "), n == 0, "{report}");
        assert_eq!(outcome.init_duration.is_some(), n == 0);
        assert!(outcome.max_memory_used_mb > 0);
    }
    assert_eq!(f.invoker.stats().instances_started, 1);

    // The runtime's logger writes Lambda's format with the request id.
    let logs = python(&*f.store, "logs", "app.logs").await;
    let (_, outcome) = f.call(&logs, json!({})).await;
    let tail = outcome.log_tail.unwrap();
    assert!(tail.contains("[WARNING]\t"), "{tail}");
    assert!(tail.contains("\tcareful"), "{tail}");
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn an_oversized_response_is_a_function_error() {
    let f = fixture(|_| {}).await;
    let huge = python(&*f.store, "huge", "app.huge").await;
    let outcome = f.invoke(request(&huge, json!({}))).await;
    let body = failed(&outcome);
    assert_eq!(body["errorType"], json!("Function.ResponseSizeTooLarge"));
    assert_eq!(
        body["errorMessage"],
        json!(format!(
            "Response payload size exceeded maximum allowed payload size ({} bytes).",
            nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES
        ))
    );
    // The runtime is fine and serves the next invocation.
    failed(&f.invoke(request(&huge, json!({}))).await);
    assert_eq!(f.invoker.stats().instances_started, 1);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn each_instance_gets_a_private_tmp_removed_when_it_stops() {
    let f = fixture(|_| {}).await;
    let writer = python(&*f.store, "writer", "app.write_tmp").await;
    let (body, _) = f.call(&writer, json!({})).await;
    let written = std::path::PathBuf::from(body.as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "hello");
    // The code folder is read-only input.
    let code = f
        .dir
        .path()
        .join("data/code")
        .join(writer.code_sha256.to_hex());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&code).unwrap().permissions());
    assert_eq!(mode & 0o222, 0, "{mode:o}");
    f.invoker.shutdown().await;
    assert!(
        !written.exists(),
        "the scratch folder is gone with its instance"
    );
}
