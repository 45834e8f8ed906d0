//! End to end, asynchronous invocation: the real `nimbus` binary on the embedded backend
//! (`nimbus dev`: SQLite store and queue, one process) and on the distributed topology
//! (gateway, invoker, DLQ service and queue-worker processes over gRPC, Postgres and Redis).
//! Every case runs on both; crash recovery is proven on each with its own kind of crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::otlp::{OtlpReceiver, ReceivedSpan};
use common::{Platform, function_dir, shared_dir};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Functions that keep what they did in `STATE_DIR`, so the test can see every attempt.
const FUNCTIONS: &str = r#"
import json, os, pathlib, time

STATE = pathlib.Path(os.environ["STATE_DIR"])
# Attempts may run on different instances, each a user of its own when Nimbus runs as root:
# what one writes, the next must be able to rewrite.
os.umask(0)

def publish(name, text):
    # Whole or not at all: the test reads the file as soon as it exists.
    partial = STATE / (name + ".partial")
    partial.write_text(text)
    os.replace(partial, STATE / name)

def count(context, suffix):
    marker = STATE / (context.aws_request_id + suffix)
    n = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(n))
    return n

def flaky(event, context):
    attempt = count(context, ".attempts")
    if attempt <= event.get("fail_attempts", 0) or (STATE / "broken").exists():
        raise RuntimeError("attempt %d failed" % attempt)
    return {"attempt": attempt}

def slow(event, context):
    count(context, ".started")
    time.sleep(event["sleep"])
    return {"slept": event["sleep"]}

def trace(event, context):
    publish("trace-" + context.aws_request_id, os.environ.get("_X_AMZN_TRACE_ID", ""))
    return {}

def versioned(event, context):
    attempt = count(context, ".attempts")
    seen = os.environ["V"] + " " + context.function_version
    publish("version-%s-%d" % (context.aws_request_id, attempt), seen)
    if attempt <= event.get("fail_attempts", 0):
        raise RuntimeError("attempt %d failed" % attempt)
    return {"v": os.environ["V"]}

def keep(event, context):
    request_id = event["requestContext"]["requestId"]
    publish("destination-" + request_id + ".json", json.dumps(event))
    return {}
"#;

/// Short waits so that a test sees every retry in seconds, a small payload limit, and
/// callbacks allowed to reach the tests' servers on loopback.
const TEST_SETTINGS: &[(&str, &str)] = &[
    ("NIMBUS_RETRY_BASE_DELAY", "200ms"),
    ("NIMBUS_SYSTEM_RETRY_BASE_DELAY", "100ms"),
    ("NIMBUS_VISIBILITY_TIMEOUT", "2s"),
    ("NIMBUS_MAX_ASYNC_PAYLOAD", "2048"),
    ("NIMBUS_CALLBACK_ALLOW_PRIVATE", "true"),
];

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A folder the functions write into, deployed with them as `STATE_DIR`.
struct Functions {
    state: tempfile::TempDir,
}

impl Functions {
    fn deploy(platform: &Platform) -> Functions {
        let state = shared_dir();
        let code = function_dir(&[("app.py", FUNCTIONS)]);
        let env = format!("STATE_DIR={}", state.path().display());
        for (name, handler) in [
            ("flaky", "app.flaky"),
            ("slow", "app.slow"),
            ("keep", "app.keep"),
            ("versioned", "app.versioned"),
        ] {
            platform.deploy(
                code.path(),
                name,
                "python3.12",
                &[
                    "--handler",
                    handler,
                    "--timeout",
                    "30",
                    "--env",
                    &env,
                    "--env",
                    "V=1",
                ],
            );
        }
        Functions { state }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.state.path().join(name)
    }
}

/// Sends an `Event` invoke and returns its response.
async fn send_event(
    platform: &Platform,
    name: &str,
    body: &str,
    callback: Option<&str>,
) -> reqwest::Response {
    let mut request = http()
        .post(platform.invoke_url(name))
        .header("X-Amz-Invocation-Type", "Event")
        .body(body.to_owned());
    if let Some(url) = callback {
        request = request.header("X-Nimbus-Callback-Url", url);
    }
    request.send().await.unwrap()
}

/// Sends an `Event` invoke that must be accepted, and returns its request id.
async fn accepted(platform: &Platform, name: &str, body: &str) -> String {
    let response = send_event(platform, name, body, None).await;
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let request_id = response.headers()["x-amzn-RequestId"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        response.bytes().await.unwrap().is_empty(),
        "202 has an empty body"
    );
    request_id
}

async fn record(platform: &Platform, request_id: &str) -> (u16, Value) {
    let url = format!("{}/nimbus/v1/invocations/{request_id}", platform.endpoint);
    let response = http().get(&url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits for the invocation to reach `status`, and returns its record.
async fn wait_for_status(platform: &Platform, request_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, record) = record(platform, request_id).await;
        if code == 200 && record["status"] == status {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{request_id} never became {status}: {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls for a file a function writes.
async fn wait_for_file(path: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put_event_invoke_config(platform: &Platform, name: &str, config: Value) {
    let url = format!(
        "{}/2019-09-25/functions/{name}/event-invoke-config",
        platform.endpoint
    );
    let response = http().put(&url).json(&config).send().await.unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

fn time(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Runs the `nimbus` CLI and returns its stdout, failing the test with its stderr.
fn cli(platform: &Platform, args: &[&str]) -> String {
    let output = platform.cli(args);
    assert!(
        output.status.success(),
        "nimbus {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn fails_twice_then_succeeds(platform: &Platform) {
    let _functions = Functions::deploy(platform);
    let request_id = accepted(platform, "flaky", r#"{"fail_attempts": 2}"#).await;
    // The record answers as soon as the 202 is sent.
    let (code, first) = record(platform, &request_id).await;
    assert_eq!(code, 200);
    assert_eq!(first["invocationType"], "Event");

    let done = wait_for_status(platform, &request_id, "succeeded").await;
    assert_eq!(done["attempts"], 3);
    let history = done["attemptHistory"].as_array().unwrap();
    let messages: Vec<_> = history.iter().map(|a| a["errorMessage"].clone()).collect();
    assert_eq!(
        messages,
        [
            json!("attempt 1 failed"),
            json!("attempt 2 failed"),
            Value::Null
        ]
    );
    assert_eq!(history[0]["errorType"], "RuntimeError");
    let wait = |n: usize| time(&history[n + 1]["startedAt"]) - time(&history[n]["finishedAt"]);
    let (first_wait, second_wait) = (wait(0), wait(1));
    assert!(
        first_wait >= time::Duration::milliseconds(200),
        "{first_wait}"
    );
    // The second retry waits at least twice the base. (That it waits longer than the first
    // is the retry policy's unit and property tests' to show: a worker blocked in a claim
    // picks a due retry up within its poll of at most a second, which can blur 200 ms steps.)
    assert!(
        second_wait >= time::Duration::milliseconds(400),
        "{second_wait}"
    );
}

async fn dead_letters_then_redrives_after_the_fix(platform: &Platform) {
    let functions = Functions::deploy(platform);
    std::fs::write(functions.path("broken"), "").unwrap();
    let request_id = accepted(platform, "flaky", r#"{"order": 7}"#).await;
    let record = wait_for_status(platform, &request_id, "dead_lettered").await;
    assert_eq!(record["attempts"], 3);

    let letter: Value =
        serde_json::from_str(&cli(platform, &["dlq", "show", &request_id])).unwrap();
    assert_eq!(letter["reason"], "RetriesExhausted");
    assert_eq!(letter["functionName"], "flaky");
    assert_eq!(letter["payload"], json!({"order": 7}));
    let errors: Vec<_> = letter["attemptHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["errorType"].clone(), a["errorMessage"].clone()))
        .collect();
    assert_eq!(
        errors,
        (1..=3)
            .map(|n| (json!("RuntimeError"), json!(format!("attempt {n} failed"))))
            .collect::<Vec<_>>()
    );
    assert!(cli(platform, &["dlq", "list", "--function", "flaky"]).contains(&request_id));

    // Fixed: the redriven event succeeds, as a new invocation linked to the letter.
    std::fs::remove_file(functions.path("broken")).unwrap();
    let redriven = cli(platform, &["dlq", "redrive", &request_id]);
    let new_id = redriven
        .lines()
        .find_map(|line| line.strip_prefix(&format!("redrove {request_id} as ")))
        .unwrap_or_else(|| panic!("no redrive in {redriven}"))
        .to_owned();
    let done = wait_for_status(platform, &new_id, "succeeded").await;
    assert_eq!(done["redriveOf"], json!(request_id));
    let again = platform.cli(&["dlq", "redrive", &request_id]);
    assert!(!again.status.success(), "a second redrive is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("ResourceConflictException"));
    assert!(
        cli(platform, &["dlq", "redrive", "--function", "flaky"])
            .contains("0 dead letter(s) redriven")
    );

    assert!(cli(platform, &["dlq", "purge", &request_id]).contains("1 dead letter(s) purged"));
    assert!(!platform.cli(&["dlq", "show", &request_id]).status.success());
}

async fn zero_retries_dead_letters_after_one_attempt(platform: &Platform) {
    let _functions = Functions::deploy(platform);
    put_event_invoke_config(platform, "flaky", json!({"MaximumRetryAttempts": 0})).await;
    let request_id = accepted(platform, "flaky", r#"{"fail_attempts": 5}"#).await;
    let record = wait_for_status(platform, &request_id, "dead_lettered").await;
    assert_eq!(record["attempts"], 1);
    let letter: Value =
        serde_json::from_str(&cli(platform, &["dlq", "show", &request_id])).unwrap();
    assert_eq!(letter["attempts"], 1);
    assert_eq!(letter["reason"], "RetriesExhausted");
}

async fn timeouts_are_failed_attempts(platform: &Platform) {
    let functions = Functions::deploy(platform);
    let code = function_dir(&[("app.py", FUNCTIONS)]);
    let env = format!("STATE_DIR={}", functions.state.path().display());
    platform.deploy(
        code.path(),
        "hasty",
        "python3.12",
        &["--handler", "app.slow", "--timeout", "1", "--env", &env],
    );
    put_event_invoke_config(platform, "hasty", json!({"MaximumRetryAttempts": 1})).await;
    let request_id = accepted(platform, "hasty", r#"{"sleep": 5}"#).await;
    let record = wait_for_status(platform, &request_id, "dead_lettered").await;
    assert_eq!(record["attempts"], 2);
    for attempt in record["attemptHistory"].as_array().unwrap() {
        assert_eq!(attempt["errorType"], "Sandbox.Timedout");
        assert!(
            attempt["errorMessage"]
                .as_str()
                .unwrap()
                .ends_with("Task timed out after 1.00 seconds"),
            "{attempt}"
        );
    }
}

/// Run on a platform whose first retry waits 61 s: past the 60 s maximum age.
async fn event_age_exceeded(platform: &Platform) {
    let _functions = Functions::deploy(platform);
    put_event_invoke_config(platform, "flaky", json!({"MaximumEventAgeInSeconds": 60})).await;
    let request_id = accepted(platform, "flaky", r#"{"fail_attempts": 5}"#).await;
    let record = wait_for_status(platform, &request_id, "dead_lettered").await;
    assert_eq!(record["attempts"], 1);
    let letter: Value =
        serde_json::from_str(&cli(platform, &["dlq", "show", &request_id])).unwrap();
    assert_eq!(letter["reason"], "EventAgeExceeded");
}

async fn bad_requests_change_nothing(platform: &Platform) {
    let functions = Functions::deploy(platform);
    let missing = send_event(platform, "nope", "{}", None).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["x-amzn-ErrorType"],
        "ResourceNotFoundException"
    );

    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000));
    let too_large = send_event(platform, "flaky", &big, None).await;
    assert_eq!(too_large.status(), 413);
    assert_eq!(
        too_large.headers()["x-amzn-ErrorType"],
        "RequestTooLargeException"
    );

    let not_json = send_event(platform, "flaky", "{nope", None).await;
    assert_eq!(not_json.status(), 400);
    assert_eq!(
        not_json.headers()["x-amzn-ErrorType"],
        "InvalidRequestContentException"
    );

    let bad_callback = send_event(platform, "flaky", "{}", Some("ftp://example.com/x")).await;
    assert_eq!(bad_callback.status(), 400);

    let listing: Value = http()
        .get(format!(
            "{}/nimbus/v1/invocations?function=flaky",
            platform.endpoint
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["invocations"], json!([]), "nothing was recorded");
    // Give a wrongly queued event the time to run before looking for its trace.
    let accepted_after = accepted(platform, "flaky", "{}").await;
    wait_for_status(platform, &accepted_after, "succeeded").await;
    let ran: Vec<_> = std::fs::read_dir(functions.state.path()).unwrap().collect();
    assert_eq!(ran.len(), 1, "only the good event ran");
}

async fn destinations_and_callbacks_get_the_record(platform: &Platform) {
    let functions = Functions::deploy(platform);
    let keep = "arn:aws:lambda:us-east-1:000000000000:function:keep";
    put_event_invoke_config(
        platform,
        "flaky",
        json!({
            "MaximumRetryAttempts": 0,
            "DestinationConfig": {"OnSuccess": {"Destination": keep}, "OnFailure": {"Destination": keep}},
        }),
    )
    .await;
    let callbacks = Arc::new(Mutex::new(Vec::<Value>::new()));
    let callback_url = start_callback_server(callbacks.clone()).await;

    let good = accepted(platform, "flaky", r#"{"fine": true}"#).await;
    let bad_response = send_event(
        platform,
        "flaky",
        r#"{"fail_attempts": 1}"#,
        Some(&callback_url),
    )
    .await;
    assert_eq!(bad_response.status(), 202);
    let bad = bad_response.headers()["x-amzn-RequestId"]
        .to_str()
        .unwrap()
        .to_owned();

    let success: Value = serde_json::from_str(
        &wait_for_file(&functions.path(&format!("destination-{good}.json"))).await,
    )
    .unwrap();
    assert_eq!(success["requestContext"]["condition"], "Success");
    assert_eq!(success["requestPayload"], json!({"fine": true}));
    assert_eq!(success["responsePayload"], json!({"attempt": 1}));
    let failure: Value = serde_json::from_str(
        &wait_for_file(&functions.path(&format!("destination-{bad}.json"))).await,
    )
    .unwrap();
    assert_eq!(failure["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(failure["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(failure["responseContext"]["functionError"], "Unhandled");
    assert_eq!(
        failure["responsePayload"]["errorMessage"],
        "attempt 1 failed"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while callbacks.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no callback arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posted = callbacks.lock().unwrap()[0].clone();
    assert_eq!(posted["requestContext"]["requestId"], json!(bad));
    assert_eq!(posted["requestContext"]["condition"], "RetriesExhausted");
}

async fn start_callback_server(received: Arc<Mutex<Vec<Value>>>) -> String {
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            received
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A crash while an event runs: it is finished after the visibility timeout, by another
/// worker (distributed) or by the restarted process (dev).
async fn a_crash_mid_event_loses_nothing(platform: &mut Platform) {
    let functions = Functions::deploy(platform);
    let request_id = accepted(platform, "slow", r#"{"sleep": 3}"#).await;
    wait_for_file(&functions.path(&format!("{request_id}.started"))).await;
    if platform.is_distributed() {
        platform.kill_worker();
        platform.start_worker();
    } else {
        platform.crash_and_restart_dev();
    }
    let record = wait_for_status(platform, &request_id, "succeeded").await;
    assert_eq!(
        record["attempts"], 1,
        "the interrupted attempt never finished"
    );
    let runs = std::fs::read_to_string(functions.path(&format!("{request_id}.started"))).unwrap();
    assert_eq!(runs.trim(), "2", "the event ran again after the crash");
}

/// SIGTERM drains every service, which then exits with success.
fn assert_clean_exit(platform: Platform) {
    for status in platform.stop() {
        assert!(status.success(), "a service exited with {status}");
    }
}

/// SIGTERM while an event runs: the service lets it finish and records it before exiting;
/// the event is neither lost nor run again.
async fn sigterm_mid_event_drains_it(platform: &mut Platform) {
    let functions = Functions::deploy(platform);
    let request_id = accepted(platform, "slow", r#"{"sleep": 2}"#).await;
    let started = functions.path(&format!("{request_id}.started"));
    wait_for_file(&started).await;
    let status = if platform.is_distributed() {
        let status = platform.terminate_worker();
        platform.start_worker();
        status
    } else {
        platform.restart_dev()
    };
    assert!(status.success(), "exited with {status}");
    let record = wait_for_status(platform, &request_id, "succeeded").await;
    assert_eq!(record["attempts"], 1);
    assert_eq!(
        std::fs::read_to_string(&started).unwrap().trim(),
        "1",
        "ran once"
    );
}

/// `PUT`s or `POST`s `body` to the Lambda API and returns the answer's JSON, failing the test
/// unless the status is `expected`.
async fn lambda_api(
    platform: &Platform,
    method: reqwest::Method,
    path: &str,
    body: Value,
    expected: u16,
) -> Value {
    let response = http()
        .request(method, format!("{}{path}", platform.endpoint))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// An event sent to version 1 runs version 1 on every attempt, even after `$LATEST` changes
/// between its attempts; an unqualified event runs `$LATEST`.
async fn events_run_the_version_they_were_sent_to(platform: &Platform) {
    let functions = Functions::deploy(platform);
    let published = lambda_api(
        platform,
        reqwest::Method::POST,
        "/2015-03-31/functions/versioned/versions",
        json!({}),
        201,
    )
    .await;
    assert_eq!(published["Version"], "1");
    let request_id = accepted(platform, "versioned:1", r#"{"fail_attempts": 1}"#).await;
    wait_for_file(&functions.path(&format!("version-{request_id}-1"))).await;
    let environment = json!({"Environment": {"Variables": {
        "V": "2",
        "STATE_DIR": functions.state.path().to_str().unwrap(),
    }}});
    lambda_api(
        platform,
        reqwest::Method::PUT,
        "/2015-03-31/functions/versioned/configuration",
        environment,
        200,
    )
    .await;
    wait_for_status(platform, &request_id, "succeeded").await;
    let second = wait_for_file(&functions.path(&format!("version-{request_id}-2"))).await;
    assert_eq!(second, "1 1", "the retry ran version 1");

    let latest = accepted(platform, "versioned", "{}").await;
    wait_for_status(platform, &latest, "succeeded").await;
    let seen = wait_for_file(&functions.path(&format!("version-{latest}-1"))).await;
    assert_eq!(seen, "2 $LATEST");
}

/// Reserved concurrency 0: a synchronous call is throttled at once, an event goes straight to
/// the dead-letter queue without an attempt.
async fn zero_reserved_concurrency_stops_the_function(platform: &Platform) {
    let functions = Functions::deploy(platform);
    lambda_api(
        platform,
        reqwest::Method::PUT,
        "/2017-10-31/functions/versioned/concurrency",
        json!({"ReservedConcurrentExecutions": 0}),
        200,
    )
    .await;
    let response = http()
        .post(platform.invoke_url("versioned"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(
        response.headers()["x-amzn-ErrorType"],
        "TooManyRequestsException"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["Reason"], "ReservedFunctionConcurrentInvocationLimitExceeded",
        "{body}"
    );

    let request_id = accepted(platform, "versioned", "{}").await;
    let record = wait_for_status(platform, &request_id, "dead_lettered").await;
    assert_eq!(record["attempts"], 0, "{record}");
    let letter: Value = http()
        .get(format!(
            "{}/nimbus/v1/dead-letters/{request_id}",
            platform.endpoint
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(letter["reason"], "Throttled", "{letter}");
    assert!(
        !functions.path(&format!("version-{request_id}-1")).exists(),
        "the function never ran"
    );
}

macro_rules! on_both {
    ($case:ident) => {
        on_both!($case, TEST_SETTINGS);
    };
    ($case:ident, $envs:expr) => {
        mod $case {
            use super::*;

            #[tokio::test]
            async fn dev() {
                let platform = Platform::dev($envs);
                super::$case(&platform).await;
                assert_clean_exit(platform);
            }

            #[tokio::test]
            async fn distributed() {
                let platform = Platform::distributed($envs);
                super::$case(&platform).await;
                assert_clean_exit(platform);
            }
        }
    };
}

on_both!(fails_twice_then_succeeds);
on_both!(events_run_the_version_they_were_sent_to);
on_both!(zero_reserved_concurrency_stops_the_function);
on_both!(dead_letters_then_redrives_after_the_fix);
on_both!(zero_retries_dead_letters_after_one_attempt);
on_both!(timeouts_are_failed_attempts);
on_both!(bad_requests_change_nothing);
on_both!(destinations_and_callbacks_get_the_record);
on_both!(
    event_age_exceeded,
    &[
        ("NIMBUS_RETRY_BASE_DELAY", "61s"),
        ("NIMBUS_VISIBILITY_TIMEOUT", "2s")
    ]
);

#[tokio::test]
async fn dev_sigterm_mid_event_drains_it() {
    let mut platform = Platform::dev(TEST_SETTINGS);
    sigterm_mid_event_drains_it(&mut platform).await;
    assert_clean_exit(platform);
}

#[tokio::test]
async fn distributed_sigterm_on_a_worker_mid_event_drains_it() {
    let mut platform = Platform::distributed(TEST_SETTINGS);
    sigterm_mid_event_drains_it(&mut platform).await;
    assert_clean_exit(platform);
}

#[tokio::test]
async fn dev_crash_mid_event_loses_nothing() {
    let mut platform = Platform::dev(TEST_SETTINGS);
    a_crash_mid_event_loses_nothing(&mut platform).await;
    assert_clean_exit(platform);
}

#[tokio::test]
async fn distributed_worker_killed_mid_event_loses_nothing() {
    let mut platform = Platform::distributed(TEST_SETTINGS);
    a_crash_mid_event_loses_nothing(&mut platform).await;
    assert_clean_exit(platform);
}

async fn every_service_answers_its_probes(platform: &Platform) {
    let urls = platform.admin_urls();
    let expected = if platform.is_distributed() { 4 } else { 1 };
    assert_eq!(urls.len(), expected);
    for url in urls {
        let alive = http().get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(alive.status(), 200, "{url}");
        let ready = http().get(format!("{url}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{url}");
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ready", "{url}: {body}");
        assert_eq!(body["checks"]["store"], "ok", "{url}: {body}");
    }
    if platform.is_distributed() {
        // The gateway (first) and the queue-worker (last) also need the invoker and the DLQ.
        let urls = platform.admin_urls();
        for url in [&urls[0], &urls[3]] {
            let body: Value = http()
                .get(format!("{url}/readyz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(body["checks"]["invoker"], "ok", "{url}: {body}");
            assert_eq!(body["checks"]["dlq"], "ok", "{url}: {body}");
        }
    }
}

async fn the_callers_trace_reaches_the_function(platform: &Platform) {
    let functions = Functions::deploy(platform);
    let code = function_dir(&[("app.py", FUNCTIONS)]);
    let env = format!("STATE_DIR={}", functions.state.path().display());
    platform.deploy(
        code.path(),
        "trace",
        "python3.12",
        &["--handler", "app.trace", "--env", &env],
    );
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let xray = "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1";
    for invocation_type in ["Event", "RequestResponse"] {
        let response = http()
            .post(platform.invoke_url("trace"))
            .header("X-Amz-Invocation-Type", invocation_type)
            .header("traceparent", traceparent)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "{invocation_type}: {status} {:?}",
            response.headers()
        );
        let request_id = response.headers()["x-amzn-RequestId"]
            .to_str()
            .unwrap()
            .to_owned();
        let seen = wait_for_file(&functions.path(&format!("trace-{request_id}"))).await;
        assert_eq!(seen, xray, "{invocation_type}");
    }
}

/// The sum over every process's `/metrics` of the samples of `name` carrying `labels`.
async fn metric(platform: &Platform, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for url in platform.admin_urls() {
        let text = http()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            if metric == name
                && labels
                    .iter()
                    .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
            {
                total += value.parse::<f64>().unwrap();
            }
        }
    }
    total
}

async fn metrics_count_known_traffic(platform: &Platform) {
    let _functions = Functions::deploy(platform);
    for body in [r#"{}"#, r#"{}"#, r#"{"fail_attempts": 1}"#] {
        let response = http()
            .post(platform.invoke_url("flaky"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    put_event_invoke_config(platform, "flaky", json!({"MaximumRetryAttempts": 0})).await;
    let request_id = accepted(platform, "flaky", r#"{"fail_attempts": 1}"#).await;
    wait_for_status(platform, &request_id, "dead_lettered").await;

    let sync = |outcome| {
        [
            ("function", "flaky"),
            ("type", "RequestResponse"),
            ("outcome", outcome),
        ]
    };
    let event = |outcome| {
        [
            ("function", "flaky"),
            ("type", "Event"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(
        metric(platform, "nimbus_invocations_total", &sync("succeeded")).await,
        2.0
    );
    assert_eq!(
        metric(
            platform,
            "nimbus_invocations_total",
            &sync("function_error")
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(platform, "nimbus_invocations_total", &event("accepted")).await,
        1.0
    );
    assert_eq!(
        metric(
            platform,
            "nimbus_invocations_total",
            &event("dead_lettered")
        )
        .await,
        1.0
    );
    let dead = [("function", "flaky"), ("reason", "RetriesExhausted")];
    assert_eq!(
        metric(platform, "nimbus_dead_letters_total", &dead).await,
        1.0
    );
    let failed_attempt = [("function", "flaky"), ("outcome", "function_error")];
    assert_eq!(
        metric(platform, "nimbus_event_attempts_total", &failed_attempt).await,
        1.0
    );
    assert!(
        metric(
            platform,
            "nimbus_cold_starts_total",
            &[("function", "flaky")]
        )
        .await
            >= 1.0
    );
    let four_calls = metric(
        platform,
        "nimbus_function_duration_seconds_count",
        &[("function", "flaky")],
    )
    .await;
    assert_eq!(four_calls, 4.0);
    assert!(metric(platform, "nimbus_record_batch_size_count", &[]).await >= 1.0);
    assert_eq!(
        metric(platform, "nimbus_queue_events", &[("state", "ready")]).await,
        0.0
    );
}

on_both!(the_callers_trace_reaches_the_function);
on_both!(
    metrics_count_known_traffic,
    &[
        ("NIMBUS_ADMIN_LISTEN", "127.0.0.1:0"),
        ("NIMBUS_RETRY_BASE_DELAY", "200ms")
    ]
);

on_both!(
    every_service_answers_its_probes,
    &[("NIMBUS_ADMIN_LISTEN", "127.0.0.1:0")]
);

#[test]
fn migrate_prepares_a_fresh_database_and_can_run_again() {
    let database = common::TestDatabase::create();
    for _ in 0..2 {
        let output = std::process::Command::new(common::NIMBUS)
            .args(["migrate", "--database-url", &database.url])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("up to date"));
    }
    common::psql(
        &database.url,
        "SELECT 1 FROM functions, invocations, event_invoke_configs, dead_letters LIMIT 1",
    );

    let refused = std::process::Command::new(common::NIMBUS)
        .args(["migrate", "--database-url", "mysql://nope"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unsupported database URL"));
}

/// `span` and the spans above it, nearest first.
fn ancestry<'a>(spans: &'a [ReceivedSpan], span: &'a ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    let mut chain = vec![span];
    while let Some(parent) = spans
        .iter()
        .find(|candidate| candidate.span_id == chain[chain.len() - 1].parent_id)
    {
        chain.push(parent);
    }
    chain
}

/// The `attempt` spans of `spans` that have the invoker's `run` span below them.
fn attempts_that_ran(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    let mut attempts: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.name == "run")
        .filter_map(|run| {
            ancestry(spans, run)
                .into_iter()
                .find(|above| above.name == "attempt")
        })
        .collect();
    attempts.sort_by_key(|attempt| attempt.attributes["attempt"].clone());
    attempts.dedup_by_key(|attempt| attempt.span_id.clone());
    attempts
}

/// One event that fails twice and then succeeds is one trace, continuing the caller's:
/// gateway request → enqueue → three attempts → the invoker's run of each. A synchronous
/// invoke is one trace down to the run, and an event that fails every attempt is
/// dead-lettered within its own trace.
async fn one_trace_follows_an_event_through_every_hop(platform: &Platform, otlp: &OtlpReceiver) {
    let _functions = Functions::deploy(platform);
    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traced = |trace_id: &str, body: &'static str| {
        http()
            .post(platform.invoke_url("flaky"))
            .header("X-Amz-Invocation-Type", "Event")
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .body(body)
            .send()
    };
    let response = traced(trace_id, r#"{"fail_attempts": 2}"#).await.unwrap();
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-amzn-RequestId"].to_str().unwrap();
    wait_for_status(platform, request_id, "succeeded").await;

    let spans = otlp
        .wait_for_trace(trace_id, |spans| attempts_that_ran(spans).len() == 3)
        .await;
    let named = |name: &str| -> Vec<&ReceivedSpan> {
        spans.iter().filter(|span| span.name == name).collect()
    };
    let (gateway, worker, invoker) = if platform.is_distributed() {
        ("nimbus-gateway", "nimbus-queue-worker", "nimbus-invoker")
    } else {
        ("nimbus-dev", "nimbus-dev", "nimbus-dev")
    };
    let request = named("request");
    assert_eq!(request.len(), 1, "{request:#?}");
    assert_eq!(
        request[0].parent_id, caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(request[0].service, gateway);
    assert_eq!(request[0].attributes["request_id"], request_id);
    let enqueue = named("enqueue");
    assert_eq!(enqueue.len(), 1, "{enqueue:#?}");
    let path: Vec<&str> = ancestry(&spans, enqueue[0])
        .iter()
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(path, ["enqueue", "invoke", "request"]);

    let attempts = attempts_that_ran(&spans);
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attributes["attempt"], (n + 1).to_string());
        assert_eq!(
            attempt.parent_id, enqueue[0].span_id,
            "attempts follow the queue"
        );
        assert_eq!(attempt.service, worker);
        assert_eq!(attempt.attributes["request_id"], request_id);
    }
    for run in named("run") {
        let chain = ancestry(&spans, run);
        assert_eq!(run.service, invoker);
        assert_eq!(
            chain.last().unwrap().span_id,
            request[0].span_id,
            "{chain:#?}"
        );
        if platform.is_distributed() {
            assert_eq!(chain[1].name, "invoker.rpc", "{chain:#?}");
            assert_eq!(chain[2].name, "attempt", "{chain:#?}");
        }
    }

    let sync_trace = "8c1d6a0e5f2b4e7a9d3c2b1a0f9e8d7c";
    let response = http()
        .post(platform.invoke_url("flaky"))
        .header("traceparent", format!("00-{sync_trace}-{caller_span}-01"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = otlp
        .wait_for_trace(sync_trace, |spans| {
            spans.iter().any(|span| span.name == "run")
        })
        .await;
    let run = spans.iter().find(|span| span.name == "run").unwrap();
    let path: Vec<&str> = ancestry(&spans, run)
        .iter()
        .map(|span| span.name.as_str())
        .collect();
    if platform.is_distributed() {
        assert_eq!(path, ["run", "invoker.rpc", "invoke", "request"]);
    } else {
        assert_eq!(path, ["run", "invoke", "request"]);
    }

    let dead_trace = "5b8aa5a2d2c872e8321cf37308d69df2";
    let response = traced(dead_trace, r#"{"fail_attempts": 9}"#).await.unwrap();
    assert_eq!(response.status(), 202);
    let request_id = response.headers()["x-amzn-RequestId"].to_str().unwrap();
    wait_for_status(platform, request_id, "dead_lettered").await;
    // A child span may be exported in an earlier batch than its parent: wait for both.
    let spans = otlp
        .wait_for_trace(dead_trace, |spans| {
            spans
                .iter()
                .filter(|span| span.name == "dead_letter")
                .any(|letter| ancestry(spans, letter).len() > 1)
        })
        .await;
    let letter = spans
        .iter()
        .find(|span| span.name == "dead_letter")
        .unwrap();
    let attempt = ancestry(&spans, letter)[1];
    assert_eq!(attempt.name, "attempt");
    assert_eq!(attempt.attributes["attempt"], "3");
    assert_eq!(letter.attributes["reason"], "RetriesExhausted");
}

mod traces {
    use super::*;

    fn envs(otlp: &OtlpReceiver) -> Vec<(&'static str, String)> {
        let mut envs: Vec<(&str, String)> = TEST_SETTINGS
            .iter()
            .map(|(key, value)| (*key, (*value).to_owned()))
            .collect();
        envs.push(("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone()));
        envs.push(("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()));
        envs
    }

    fn borrowed<'a>(envs: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
        envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    // The collector must answer while the test thread blocks on starting processes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dev() {
        let otlp = OtlpReceiver::start().await;
        let envs = envs(&otlp);
        let platform = Platform::dev(&borrowed(&envs));
        one_trace_follows_an_event_through_every_hop(&platform, &otlp).await;
        assert_clean_exit(platform);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn distributed() {
        let otlp = OtlpReceiver::start().await;
        let envs = envs(&otlp);
        let platform = Platform::distributed(&borrowed(&envs));
        one_trace_follows_an_event_through_every_hop(&platform, &otlp).await;
        assert_clean_exit(platform);
    }
}
