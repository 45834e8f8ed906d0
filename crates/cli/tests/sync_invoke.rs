//! End to end: the real `nimbus` binary, functions deployed with `nimbus fn deploy`, invoked
//! over real HTTP, on the embedded store (`nimbus dev`) and on the distributed topology
//! (gateway, invoker, DLQ service and queue-worker processes over gRPC, Postgres, Redis).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{Platform, function_dir, shared_dir, target_dir};
use serde_json::{Value, json};

const PYTHON_FUNCTIONS: &str = r#"
import os, pathlib, time

def echo(event, context):
    print("echo line for", context.aws_request_id)
    custom = context.client_context.custom if context.client_context else None
    return {
        "event": event,
        "pid": os.getpid(),
        "requestId": context.aws_request_id,
        "functionName": context.function_name,
        "memory": context.memory_limit_in_mb,
        "greeting": os.environ.get("GREETING"),
        "custom": custom,
    }

def fail(event, context):
    raise ValueError("bad input: %s" % event.get("x"))

def slow(event, context):
    pathlib.Path(event["pidfile"]).write_text(str(os.getpid()))
    time.sleep(60)
    return "too late"

def crash(event, context):
    if event.get("crash"):
        os._exit(3)
    return {"pid": os.getpid()}

def gate(event, context):
    folder = pathlib.Path(event["dir"])
    (folder / ("started-%d" % os.getpid())).touch()
    while not (folder / "release").exists():
        time.sleep(0.01)
    return {"pid": os.getpid()}
"#;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn invoke(platform: &Platform, name: &str, body: &str) -> reqwest::Response {
    http()
        .post(platform.invoke_url(name))
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn deploy_python(platform: &Platform, name: &str, handler: &str, extra: &[&str]) {
    let dir = function_dir(&[("app.py", PYTHON_FUNCTIONS)]);
    platform.deploy(
        dir.path(),
        name,
        "python3.12",
        &[&["--handler", handler], extra].concat(),
    );
}

/// The cases both topologies must pass.
async fn python_sync_invoke_round_trip(platform: &Platform) {
    deploy_python(platform, "echo", "app.echo", &["--env", "GREETING=hi"]);
    let context = base64::engine::general_purpose::STANDARD
        .encode(json!({"custom": {"tenant": "acme"}}).to_string());
    let response = http()
        .post(platform.invoke_url("echo"))
        .header("X-Amz-Log-Type", "Tail")
        .header("X-Amz-Client-Context", context)
        .body(r#"{"hello":"world"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = header(&response, "x-amzn-RequestId").expect("request id header");
    assert_eq!(
        header(&response, "X-Amz-Executed-Version").as_deref(),
        Some("$LATEST")
    );
    assert_eq!(header(&response, "X-Amz-Function-Error"), None);
    let log = base64::engine::general_purpose::STANDARD
        .decode(header(&response, "X-Amz-Log-Result").expect("log tail"))
        .unwrap();
    let log = String::from_utf8(log).unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["event"], json!({"hello": "world"}));
    assert_eq!(body["requestId"], json!(request_id));
    assert_eq!(body["functionName"], json!("echo"));
    assert_eq!(body["greeting"], json!("hi"));
    assert_eq!(body["custom"], json!({"tenant": "acme"}));
    assert!(
        log.contains(&format!("START RequestId: {request_id}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("echo line for {request_id}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("END RequestId: {request_id}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("REPORT RequestId: {request_id}")),
        "{log}"
    );
    assert!(
        log.contains("Init Duration"),
        "a cold start reports its init: {log}"
    );

    // The second call is served by the same warm instance: no new process, no init.
    let response = http()
        .post(platform.invoke_url("echo"))
        .header("X-Amz-Log-Type", "Tail")
        .body("{}")
        .send()
        .await
        .unwrap();
    let log = base64::engine::general_purpose::STANDARD
        .decode(header(&response, "X-Amz-Log-Result").unwrap())
        .unwrap();
    assert!(!String::from_utf8(log).unwrap().contains("Init Duration"));
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["pid"], body["pid"], "warm instance reused");

    // The invocation has a record, looked up by its request id.
    let record = wait_for_record(platform, &request_id).await;
    assert_eq!(record["status"], json!("succeeded"));
    assert_eq!(record["functionName"], json!("echo"));
}

async fn wait_for_record(platform: &Platform, request_id: &str) -> Value {
    let url = format!("{}/nimbus/v1/invocations/{request_id}", platform.endpoint);
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200, "record of {request_id}");
    response.json().await.unwrap()
}

async fn throttles_beyond_the_function_concurrency(platform: &Platform) {
    deploy_python(platform, "gate", "app.gate", &[]);
    let barrier = shared_dir();
    let event = json!({"dir": barrier.path()}).to_string();
    let first = tokio::spawn(invoke_owned(platform.invoke_url("gate"), event.clone()));
    let second = tokio::spawn(invoke_owned(platform.invoke_url("gate"), event.clone()));
    wait_until(|| started(barrier.path()) == 2).await;

    let third = invoke(platform, "gate", &event).await;
    assert_eq!(third.status(), 429);
    assert_eq!(
        header(&third, "x-amzn-ErrorType").as_deref(),
        Some("TooManyRequestsException")
    );
    let body: Value = third.json().await.unwrap();
    assert_eq!(
        body["Reason"],
        json!("ReservedFunctionConcurrentInvocationLimitExceeded")
    );

    std::fs::write(barrier.path().join("release"), "").unwrap();
    let first = first.await.unwrap();
    let second = second.await.unwrap();
    assert_ne!(
        first["pid"], second["pid"],
        "two instances served the two calls"
    );
}

async fn invoke_owned(url: String, body: String) -> Value {
    let response = http().post(url).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn started(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("started-")
        })
        .count()
}

/// Polls a condition the test cannot be notified of (files written by a function).
async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dev_python_round_trip() {
    let platform = Platform::dev(&[]);
    python_sync_invoke_round_trip(&platform).await;
}

#[tokio::test]
async fn distributed_python_round_trip() {
    let platform = Platform::distributed(&[]);
    python_sync_invoke_round_trip(&platform).await;
}

#[tokio::test]
async fn dev_throttles_beyond_concurrency() {
    let platform = Platform::dev(&[("NIMBUS_FUNCTION_CONCURRENCY", "2")]);
    throttles_beyond_the_function_concurrency(&platform).await;
}

#[tokio::test]
async fn distributed_throttles_beyond_concurrency() {
    let platform = Platform::distributed(&[("NIMBUS_FUNCTION_CONCURRENCY", "2")]);
    throttles_beyond_the_function_concurrency(&platform).await;
}

#[tokio::test]
async fn node_functions_in_commonjs_and_es_modules() {
    let platform = Platform::dev(&[]);
    let cjs = function_dir(&[(
        "index.js",
        "exports.handler = async (event, context) => ({ kind: 'cjs', event, id: context.awsRequestId });",
    )]);
    platform.deploy(
        cjs.path(),
        "cjs",
        "nodejs20.x",
        &["--handler", "index.handler"],
    );
    let esm = function_dir(&[(
        "lib/main.mjs",
        "export async function run(event) { if (event.fail) { throw new RangeError('nope'); } return { kind: 'esm', event }; }",
    )]);
    platform.deploy(
        esm.path(),
        "esm",
        "nodejs20.x",
        &["--handler", "lib/main.run"],
    );

    let response = invoke(&platform, "cjs", r#"{"n":1}"#).await;
    let id = header(&response, "x-amzn-RequestId").unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"kind": "cjs", "event": {"n": 1}, "id": id}));

    let body: Value = invoke(&platform, "esm", r#"{"n":2}"#)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"kind": "esm", "event": {"n": 2}}));

    let response = invoke(&platform, "esm", r#"{"fail":true}"#).await;
    assert_eq!(
        header(&response, "X-Amz-Function-Error").as_deref(),
        Some("Unhandled")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorType"], json!("RangeError"));
    assert_eq!(body["errorMessage"], json!("nope"));
}

#[tokio::test]
async fn rust_function_built_with_lambda_runtime() {
    let bootstrap = target_dir().join("bootstrap");
    assert!(
        bootstrap.exists(),
        "{} is missing: build it with `cargo build -p nimbus-example-rust-hello` (scripts/test does)",
        bootstrap.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&bootstrap, dir.path().join("bootstrap")).unwrap();
    let platform = Platform::dev(&[]);
    platform.deploy(dir.path(), "rusty", "provided.al2023", &[]);

    let response = invoke(&platform, "rusty", r#"{"name":"Ferris"}"#).await;
    assert_eq!(response.status(), 200);
    let id = header(&response, "x-amzn-RequestId").unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["greeting"], json!("Hello, Ferris!"));
    assert_eq!(body["requestId"], json!(id));
    assert!(
        body["functionArn"]
            .as_str()
            .unwrap()
            .ends_with(":function:rusty")
    );

    let response = invoke(&platform, "rusty", r#"{"fail":true}"#).await;
    assert_eq!(
        header(&response, "X-Amz-Function-Error").as_deref(),
        Some("Unhandled")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorMessage"], json!("asked to fail"));
}

#[tokio::test]
async fn function_errors_timeouts_and_crashes_are_reported_like_lambda() {
    let platform = Platform::dev(&[]);
    deploy_python(&platform, "fail", "app.fail", &[]);
    deploy_python(&platform, "slow", "app.slow", &["--timeout", "1"]);
    deploy_python(&platform, "crash", "app.crash", &[]);

    let response = invoke(&platform, "fail", r#"{"x": 7}"#).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "X-Amz-Function-Error").as_deref(),
        Some("Unhandled")
    );
    let id = header(&response, "x-amzn-RequestId").unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorType"], json!("ValueError"));
    assert_eq!(body["errorMessage"], json!("bad input: 7"));
    assert!(body["stackTrace"].is_array());
    let record = wait_for_record(&platform, &id).await;
    assert_eq!(record["status"], json!("failed"));
    assert_eq!(record["errorType"], json!("ValueError"));

    let shared = shared_dir();
    let pidfile = shared.path().join("slow.pid");
    let response = invoke(&platform, "slow", &json!({"pidfile": pidfile}).to_string()).await;
    assert_eq!(
        header(&response, "X-Amz-Function-Error").as_deref(),
        Some("Unhandled")
    );
    let id = header(&response, "x-amzn-RequestId").unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errorMessage"],
        json!(format!(
            "RequestId: {id} Error: Task timed out after 1.00 seconds"
        ))
    );
    assert_eq!(body["errorType"], json!("Sandbox.Timedout"));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the timed-out instance {pid} was killed and reaped"
    );

    let before: Value = invoke(&platform, "crash", "{}").await.json().await.unwrap();
    let response = invoke(&platform, "crash", r#"{"crash":true}"#).await;
    assert_eq!(
        header(&response, "X-Amz-Function-Error").as_deref(),
        Some("Unhandled")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errorType"], json!("Runtime.ExitError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Runtime exited with error: exit status 3"),
        "{body}"
    );
    // The crashed instance was replaced: the function still answers, from a new process.
    let after: Value = invoke(&platform, "crash", "{}").await.json().await.unwrap();
    assert!(after["pid"].is_u64());
    assert_ne!(after["pid"], before["pid"]);
}

#[tokio::test]
async fn bad_requests_get_lambda_errors_and_change_nothing() {
    let platform = Platform::dev(&[("NIMBUS_MAX_SYNC_PAYLOAD", "1024")]);
    deploy_python(&platform, "echo", "app.echo", &[]);

    let response = invoke(&platform, "echo", "not json").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        header(&response, "x-amzn-ErrorType").as_deref(),
        Some("InvalidRequestContentException")
    );

    let response = invoke(&platform, "echo", &format!("\"{}\"", "x".repeat(2000))).await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        header(&response, "x-amzn-ErrorType").as_deref(),
        Some("RequestTooLargeException")
    );

    let response = invoke(&platform, "missing", "{}").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        header(&response, "x-amzn-ErrorType").as_deref(),
        Some("ResourceNotFoundException")
    );

    let response = http()
        .post(platform.invoke_url("echo"))
        .header("X-Amz-Invocation-Type", "DryRun")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // A zip whose entry escapes its folder is refused and nothing is created.
    let evil = function_dir(&[]);
    let zip_path = evil.path().join("evil.zip");
    write_zip(&zip_path, &[("../../escape.py", "x = 1")]);
    let output = platform.cli(&[
        "fn",
        "deploy",
        zip_path.to_str().unwrap(),
        "--name",
        "evil",
        "--runtime",
        "python3.12",
        "--handler",
        "escape.x",
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("InvalidParameterValueException"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let response = http()
        .get(format!("{}/2015-03-31/functions/evil", platform.endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

fn write_zip(path: &std::path::Path, entries: &[(&str, &str)]) {
    use std::io::Write as _;
    let file = std::fs::File::create(path).unwrap();
    let mut writer = zip::ZipWriter::new(file);
    for (name, body) in entries {
        writer
            .start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(body.as_bytes()).unwrap();
    }
    writer.finish().unwrap();
}

#[tokio::test]
async fn the_cli_lists_and_invokes() {
    let platform = Platform::dev(&[]);
    deploy_python(&platform, "echo", "app.echo", &[]);
    let list = platform.cli(&["fn", "list"]);
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(
        list.contains("echo") && list.contains("python3.12"),
        "{list}"
    );

    let output = platform.cli(&["invoke", "echo", "--payload", r#"{"via":"cli"}"#]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["event"], json!({"via": "cli"}));
}

#[tokio::test]
async fn sigterm_stops_dev_cleanly() {
    let platform = Platform::dev(&[]);
    deploy_python(&platform, "echo", "app.echo", &[]);
    let body: Value = invoke(&platform, "echo", "{}").await.json().await.unwrap();
    let instance = body["pid"].as_u64().unwrap();
    let statuses = platform.stop();
    assert!(statuses.iter().all(|s| s.success()), "{statuses:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{instance}")).exists(),
        "instances stop with the platform"
    );
}

/// The examples deploy with the commands examples/README.md gives, and answer.
#[tokio::test]
async fn the_documented_examples_deploy_and_run() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let platform = Platform::dev(&[]);
    platform.deploy(
        &examples.join("python-hello"),
        "hello-py",
        "python3.12",
        &["--handler", "app.handler"],
    );
    platform.deploy(
        &examples.join("node-hello"),
        "hello-node",
        "nodejs20.x",
        &["--handler", "index.handler"],
    );
    for name in ["hello-py", "hello-node"] {
        let response = invoke(&platform, name, r#"{"name":"Nimbus"}"#).await;
        assert_eq!(response.status(), 200, "{name}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["greeting"], json!("Hello, Nimbus!"), "{name}");

        let response = invoke(&platform, name, r#"{"fail":true}"#).await;
        assert_eq!(
            header(&response, "X-Amz-Function-Error").as_deref(),
            Some("Unhandled")
        );
    }
}
