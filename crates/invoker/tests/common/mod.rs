//! What every invoker test needs: an invoker on a fresh data folder and SQLite store, zipped
//! functions put in that store, requests, and ways to wait for what a function does.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::function::LATEST;
use nimbus_core::{
    CodeSha256, FunctionConfig, FunctionError, FunctionName, InvokeOutcome, InvokeRequest,
    Invoker as _, RequestId,
};
use nimbus_invoker::{InvokerConfig, LocalInvoker};
use nimbus_store::Store;
use serde_json::Value;

/// Python handlers the tests share, in `app.py`.
pub const PYTHON_APP: &str = r#"
import json, logging, os, pathlib, subprocess, sys, time

def echo(event, context):
    custom = context.client_context.custom if context.client_context else None
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "client_custom": custom,
        "identity": context.identity,
        "greeting": os.environ.get("GREETING"),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "tmpdir": os.environ.get("TMPDIR"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "execution_env": os.environ.get("AWS_EXECUTION_ENV"),
        "region": os.environ.get("AWS_REGION"),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
    }

def pid(event, context):
    return os.getpid()

class BadInput(Exception):
    pass

def fail(event, context):
    raise BadInput("bad input: %s" % event.get("x"))

def slow(event, context):
    child = subprocess.Popen(["sleep", "300"])
    pathlib.Path(event["pidfile"]).write_text(str(child.pid))
    time.sleep(300)

def pid_or_crash(event, context):
    if event.get("crash"):
        print("about to crash")
        os._exit(3)
    return os.getpid()

def block(event, context):
    folder = pathlib.Path(event["dir"])
    (folder / ("started-%d" % os.getpid())).touch()
    while not (folder / "release").exists():
        time.sleep(0.01)
    return os.getpid()

def last_words(event, context):
    print("last words %s" % event["n"])
    return event["n"]

def logs(event, context):
    logging.getLogger().warning("careful")
    return None

def huge(event, context):
    return "x" * (7 * 1024 * 1024)

def write_tmp(event, context):
    path = pathlib.Path(os.environ["TMPDIR"]) / "scratch.txt"
    path.write_text("hello")
    return str(path)
"#;

pub struct Fixture {
    pub invoker: Arc<LocalInvoker>,
    pub store: Arc<dyn Store>,
    pub dir: tempfile::TempDir,
}

/// The invoker's data folder is in `dir`, which (like `/tmp`) every user can reach and write
/// to: functions may run as users of their own (when the tests run as root) and the tests
/// hand them files to write there. The store's file is kept private.
pub async fn fixture(tune: impl FnOnce(&mut InvokerConfig)) -> Fixture {
    let dir = shared_dir();
    let private = dir.path().join("store");
    std::fs::create_dir(&private).unwrap();
    let store = nimbus_store::connect(&format!("sqlite://{}", private.join("db").display()))
        .await
        .unwrap();
    let mut config = InvokerConfig {
        data_dir: dir.path().join("data"),
        ..InvokerConfig::default()
    };
    tune(&mut config);
    let invoker = LocalInvoker::start(config, store.clone()).await.unwrap();
    Fixture {
        invoker,
        store,
        dir,
    }
}

impl Fixture {
    pub async fn invoke(&self, request: InvokeRequest) -> InvokeOutcome {
        self.invoker.invoke(request).await.unwrap()
    }

    /// Invokes `function` with `payload` and the log tail, expecting success.
    pub async fn call(&self, function: &FunctionConfig, payload: Value) -> (Value, InvokeOutcome) {
        let mut request = request(function, payload);
        request.want_log_tail = true;
        let outcome = self.invoke(request).await;
        (succeeded(&outcome), outcome)
    }
}

/// A temporary folder every user can reach and write to: functions running as users of their
/// own leave files there for the tests.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Zips `files` (a file named `bootstrap` executable), puts the zip in the store and returns
/// a function running it.
pub async fn function(
    store: &dyn Store,
    name: &str,
    runtime: &str,
    handler: Option<&str>,
    files: &[(&str, &str)],
) -> FunctionConfig {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (file, body) in files {
        let mode = if Path::new(file).file_name() == Some("bootstrap".as_ref()) {
            0o755
        } else {
            0o644
        };
        let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
        writer.start_file(*file, options).unwrap();
        writer.write_all(body.as_bytes()).unwrap();
    }
    let zip = Bytes::from(writer.finish().unwrap().into_inner());
    let sha = CodeSha256::of(&zip);
    store.put_code(&sha, zip.clone()).await.unwrap();
    FunctionConfig {
        name: FunctionName::parse(name).unwrap(),
        runtime: runtime.parse().unwrap(),
        handler: handler.map(str::to_owned),
        role: String::new(),
        description: String::new(),
        timeout_secs: 10,
        memory_mb: 128,
        environment: BTreeMap::new(),
        reserved_concurrency: None,
        code_sha256: sha,
        code_size: zip.len() as u64,
        version: LATEST.to_owned(),
        revision_id: "r1".to_owned(),
        last_modified: time::OffsetDateTime::now_utc(),
    }
}

/// A Python 3.11 function running `handler` out of [`PYTHON_APP`].
pub async fn python(store: &dyn Store, name: &str, handler: &str) -> FunctionConfig {
    function(
        store,
        name,
        "python3.11",
        Some(handler),
        &[("app.py", PYTHON_APP)],
    )
    .await
}

pub fn request(function: &FunctionConfig, payload: Value) -> InvokeRequest {
    InvokeRequest {
        request_id: RequestId::new(),
        function: function.clone(),
        payload: Bytes::from(payload.to_string()),
        client_context: None,
        want_log_tail: false,
        trace_id: None,
    }
}

/// The JSON a successful invocation returned.
pub fn succeeded(outcome: &InvokeOutcome) -> Value {
    assert_eq!(
        outcome.function_error,
        None,
        "{}",
        String::from_utf8_lossy(&outcome.payload)
    );
    serde_json::from_slice(&outcome.payload).unwrap()
}

/// The error document a failed invocation returned.
pub fn failed(outcome: &InvokeOutcome) -> Value {
    assert_eq!(
        outcome.function_error,
        Some(FunctionError::Unhandled),
        "{}",
        String::from_utf8_lossy(&outcome.payload)
    );
    serde_json::from_slice(&outcome.payload).unwrap()
}

/// Whether process `pid` still runs (a zombie has finished running).
pub fn running(pid: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Whether process `pid` exists at all (a zombie does: nobody reaped it).
pub fn exists(pid: u64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Polls a condition the test cannot be notified of (a function's files, a process' end),
/// failing after a generous deadline.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many `started-*` files the `block` handler left in `dir`.
pub fn started(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("started-")
        })
        .count()
}
