//! Custom runtimes (`provided*`): the zip's own `bootstrap` speaks the Runtime API, so these
//! tests also pin the Runtime API down as a runtime client sees it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{eventually, failed, fixture, function, request, succeeded};
use serde_json::{Value, json};

/// A custom runtime in Python with nothing but urllib: echoes what `/next` gave it, fails
/// when asked, and tries what a runtime must not do (answer twice, answer unknown ids),
/// writing the Runtime API's answers to a file the event names.
const BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import json, os, urllib.error, urllib.request

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]

def post(path, body, headers={}):
    request = urllib.request.Request(API + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())

while True:
    with urllib.request.urlopen(API + "/invocation/next") as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        event = json.loads(response.read())
    request_id = headers["lambda-runtime-aws-request-id"]
    if event.get("fail"):
        post("/invocation/%s/error" % request_id, b"not a json document",
             {"Lambda-Runtime-Function-Error-Type": "Custom.Failure"})
        continue
    answer = json.dumps({
        "event": event,
        "headers": headers,
        "handler": os.environ.get("_HANDLER"),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LAMBDA_", "TZ", "LANG"))},
    }).encode()
    first = post("/invocation/%s/response" % request_id, answer)
    if event.get("report"):
        again = post("/invocation/%s/response" % request_id, answer)
        unknown = post("/invocation/00000000-0000-0000-0000-000000000000/response", b"{}")
        with open(event["report"] + ".tmp", "w") as report:
            json.dump({"first": first, "again": again, "unknown": unknown}, report)
        os.rename(event["report"] + ".tmp", event["report"])
"#;

#[tokio::test]
async fn a_custom_runtime_speaks_the_runtime_api() {
    let f = fixture(|_| {}).await;
    let mut custom = function(
        &*f.store,
        "custom",
        "provided.al2023",
        Some("anything.goes"),
        &[("bootstrap", BOOTSTRAP)],
    )
    .await;
    custom.timeout_secs = 5;
    let report = f.dir.path().join("report.json");
    let mut call = request(&custom, json!({"report": report}));
    call.trace_id = Some("Root=1-abc".to_owned());
    call.client_context = Some(r#"{"custom":{"a":1}}"#.to_owned());
    let id = call.request_id.to_string();
    let before_ms = epoch_ms();
    let outcome = f.invoke(call).await;
    let body = succeeded(&outcome);

    let headers = &body["headers"];
    assert_eq!(headers["lambda-runtime-aws-request-id"], json!(id));
    assert_eq!(
        headers["lambda-runtime-invoked-function-arn"],
        json!("arn:aws:lambda:us-east-1:000000000000:function:custom")
    );
    assert_eq!(headers["lambda-runtime-trace-id"], json!("Root=1-abc"));
    assert_eq!(
        headers["lambda-runtime-client-context"],
        json!(r#"{"custom":{"a":1}}"#)
    );
    assert_eq!(headers["content-type"], json!("application/json"));
    let deadline: u128 = headers["lambda-runtime-deadline-ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        deadline >= before_ms + 4_000 && deadline <= epoch_ms() + 5_000,
        "{deadline}"
    );
    assert_eq!(body["handler"], json!("anything.goes"));
    let env = &body["env"];
    assert_eq!(
        env["AWS_EXECUTION_ENV"],
        json!("AWS_Lambda_provided.al2023")
    );
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], json!("custom"));
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], json!("128"));
    assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], json!("on-demand"));
    assert_eq!(env["TZ"], json!(":UTC"));
    assert!(
        env["AWS_LAMBDA_RUNTIME_API"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(env.get("LAMBDA_TASK_ROOT").is_some());

    // What the Runtime API answered the runtime, written after the invocation ended.
    eventually("the runtime's report", || report.exists()).await;
    let answers: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(answers["first"], json!([202, {"status": "OK"}]));
    assert_eq!(answers["again"][0], json!(400));
    assert_eq!(answers["again"][1]["errorType"], json!("InvalidRequestID"));
    assert_eq!(answers["unknown"][0], json!(400));
    assert_eq!(
        answers["unknown"][1]["errorType"],
        json!("InvalidRequestID")
    );

    // An error whose body is no document takes its type from the header.
    let outcome = f.invoke(request(&custom, json!({"fail": true}))).await;
    assert_eq!(outcome.error_type.as_deref(), Some("Custom.Failure"));
    assert_eq!(&outcome.payload[..], b"not a json document");
    assert_eq!(f.invoker.stats().instances_started, 1);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_bootstrap_that_cannot_run_is_an_invalid_entrypoint() {
    let f = fixture(|_| {}).await;
    let missing = function(
        &*f.store,
        "nobootstrap",
        "provided",
        None,
        &[("readme", "x")],
    )
    .await;
    let body = failed(&f.invoke(request(&missing, json!({}))).await);
    assert_eq!(body["errorType"], json!("Runtime.InvalidEntrypoint"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Couldn't find valid bootstrap(s)"),
        "{body}"
    );

    let bad_interpreter = function(
        &*f.store,
        "badinterpreter",
        "provided.al2",
        None,
        &[("bootstrap", "#!/no/such/interpreter\n")],
    )
    .await;
    let body = failed(&f.invoke(request(&bad_interpreter, json!({}))).await);
    assert_eq!(body["errorType"], json!("Runtime.InvalidEntrypoint"));
    assert_eq!(f.invoker.stats().instances_started, 0);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_runtime_that_exits_before_taking_work_is_an_exit_error() {
    let f = fixture(|_| {}).await;
    let quitter = function(
        &*f.store,
        "quitter",
        "provided.al2023",
        None,
        &[("bootstrap", "#!/bin/sh\necho giving up >&2\nexit 2\n")],
    )
    .await;
    let mut call = request(&quitter, json!({}));
    call.want_log_tail = true;
    let outcome = f.invoke(call).await;
    let body = failed(&outcome);
    assert_eq!(body["errorType"], json!("Runtime.ExitError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Runtime exited with error: exit status 2"),
        "{body}"
    );
    assert!(outcome.log_tail.unwrap().contains("giving up"));

    let killed = function(
        &*f.store,
        "killed",
        "provided.al2023",
        None,
        &[("bootstrap", "#!/bin/sh\nkill -9 $$\n")],
    )
    .await;
    let body = failed(&f.invoke(request(&killed, json!({}))).await);
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Runtime exited with error: signal: 9 (SIGKILL)"),
        "{body}"
    );
    f.invoker.shutdown().await;
}

fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}
