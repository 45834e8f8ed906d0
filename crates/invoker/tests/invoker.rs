//! The invoker on its own, with real runtime processes: idle reaping, the node-wide instance
//! limit, init failures, and the gRPC adapter carrying outcomes and errors unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::error::ThrottleReason;
use nimbus_core::function::LATEST;
use nimbus_core::{
    CodeSha256, Error, FunctionConfig, FunctionError, FunctionName, InvokeRequest, Invoker,
    RequestId,
};
use nimbus_invoker::{InvokerConfig, LocalInvoker};
use nimbus_store::Store;
use serde_json::{Value, json};

const FUNCTIONS: &str = r#"
import os, pathlib, time

def pid(event, context):
    return os.getpid()

def block(event, context):
    folder = pathlib.Path(event["dir"])
    (folder / "started").touch()
    while not (folder / "release").exists():
        time.sleep(0.01)
    return os.getpid()
"#;

struct Fixture {
    invoker: Arc<LocalInvoker>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

async fn fixture(tune: impl FnOnce(&mut InvokerConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = nimbus_store::connect(&format!("sqlite://{}", dir.path().join("db").display()))
        .await
        .unwrap();
    let mut config = InvokerConfig {
        data_dir: dir.path().to_path_buf(),
        ..InvokerConfig::default()
    };
    tune(&mut config);
    let invoker = LocalInvoker::start(config, store.clone()).await.unwrap();
    Fixture {
        invoker,
        store,
        _dir: dir,
    }
}

async fn function(
    store: &dyn Store,
    name: &str,
    runtime: &str,
    handler: Option<&str>,
    files: &[(&str, &str)],
) -> FunctionConfig {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (file, body) in files {
        writer
            .start_file(*file, zip::write::SimpleFileOptions::default())
            .unwrap();
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

async fn python(store: &dyn Store, name: &str, handler: &str) -> FunctionConfig {
    function(
        store,
        name,
        "python3.12",
        Some(handler),
        &[("app.py", FUNCTIONS)],
    )
    .await
}

fn request(function: &FunctionConfig, payload: Value) -> InvokeRequest {
    InvokeRequest {
        request_id: RequestId::new(),
        function: function.clone(),
        payload: Bytes::from(payload.to_string()),
        client_context: None,
        want_log_tail: false,
        trace_id: None,
    }
}

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_of(outcome: &nimbus_core::InvokeOutcome) -> u64 {
    assert_eq!(outcome.function_error, None, "{:?}", outcome.payload);
    serde_json::from_slice(&outcome.payload).unwrap()
}

#[tokio::test]
async fn idle_instances_are_reaped() {
    let f = fixture(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let function = python(&*f.store, "reaped", "app.pid").await;
    let pid = pid_of(
        &f.invoker
            .invoke(request(&function, json!({})))
            .await
            .unwrap(),
    );
    assert_eq!(f.invoker.stats().warm, 1);
    eventually("idle reaping", || {
        f.invoker.stats().warm == 0 && !alive(pid)
    })
    .await;
    // The next call starts a fresh instance.
    let again = pid_of(
        &f.invoker
            .invoke(request(&function, json!({})))
            .await
            .unwrap(),
    );
    assert_ne!(again, pid);
    assert_eq!(f.invoker.stats().instances_started, 2);
    f.invoker.shutdown().await;
    assert!(!alive(again));
}

#[tokio::test]
async fn the_node_limit_evicts_idle_instances_then_throttles() {
    let f = fixture(|c| c.max_instances = 1).await;
    let first = python(&*f.store, "first", "app.pid").await;
    let blocker = python(&*f.store, "blocker", "app.block").await;
    let first_pid = pid_of(&f.invoker.invoke(request(&first, json!({}))).await.unwrap());

    // The only slot is idle: another function takes it.
    let barrier = tempfile::tempdir().unwrap();
    let invoker = f.invoker.clone();
    let blocked = tokio::spawn({
        let request = request(&blocker, json!({"dir": barrier.path()}));
        async move { invoker.invoke(request).await }
    });
    eventually("the blocker starting", || {
        barrier.path().join("started").exists()
    })
    .await;
    eventually("the idle instance's eviction", || !alive(first_pid)).await;

    // Now the only slot is busy.
    let throttled = f.invoker.invoke(request(&first, json!({}))).await;
    assert_eq!(
        throttled.unwrap_err(),
        Error::TooManyRequests(ThrottleReason::NodeConcurrency)
    );
    std::fs::write(barrier.path().join("release"), "").unwrap();
    pid_of(&blocked.await.unwrap().unwrap());
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn init_failures_are_function_errors() {
    let f = fixture(|_| {}).await;
    let missing_module = python(&*f.store, "nomod", "missing.handler").await;
    let outcome = f
        .invoker
        .invoke(request(&missing_module, json!({})))
        .await
        .unwrap();
    assert_eq!(outcome.function_error, Some(FunctionError::Unhandled));
    let body: Value = serde_json::from_slice(&outcome.payload).unwrap();
    assert_eq!(body["errorType"], json!("Runtime.ImportModuleError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Unable to import module 'missing'")
    );

    let missing_handler = python(&*f.store, "nohandler", "app.nothing").await;
    let outcome = f
        .invoker
        .invoke(request(&missing_handler, json!({})))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&outcome.payload).unwrap();
    assert_eq!(body["errorType"], json!("Runtime.HandlerNotFound"));

    let no_bootstrap = function(
        &*f.store,
        "custom",
        "provided.al2023",
        None,
        &[("readme", "x")],
    )
    .await;
    let outcome = f
        .invoker
        .invoke(request(&no_bootstrap, json!({})))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&outcome.payload).unwrap();
    assert_eq!(body["errorType"], json!("Runtime.InvalidEntrypoint"));
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn grpc_carries_outcomes_and_errors() {
    let f = fixture(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(nimbus_invoker::grpc::serve(
        listener,
        f.invoker.clone() as Arc<dyn Invoker>,
        stop.clone().cancelled_owned(),
    ));
    let remote = nimbus_invoker::grpc::RemoteInvoker::connect(&url)
        .await
        .unwrap();

    let function = python(&*f.store, "remote", "app.pid").await;
    let mut call = request(&function, json!({}));
    call.want_log_tail = true;
    let outcome = remote.invoke(call.clone()).await.unwrap();
    pid_of(&outcome);
    let tail = outcome.log_tail.unwrap();
    assert!(
        tail.contains(&format!("REPORT RequestId: {}", call.request_id)),
        "{tail}"
    );
    assert!(outcome.init_duration.is_some());

    let mut closed = function.clone();
    closed.reserved_concurrency = Some(0);
    let err = remote
        .invoke(request(&closed, json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::TooManyRequests(ThrottleReason::FunctionConcurrency)
    );

    stop.cancel();
    server.await.unwrap().unwrap();
    f.invoker.shutdown().await;
    let unreachable = remote
        .invoke(request(&function, json!({})))
        .await
        .unwrap_err();
    assert!(matches!(unreachable, Error::Service(_)), "{unreachable:?}");
}
