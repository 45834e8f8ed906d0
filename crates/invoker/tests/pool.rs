//! The instance pool with real runtime processes: warm reuse, the function and node limits,
//! configuration updates, idle reaping, callers that go away, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, exists, failed, fixture, python, request, started, succeeded};
use nimbus_core::error::ThrottleReason;
use nimbus_core::{Error, Invoker as _};
use serde_json::json;

fn pid(value: serde_json::Value) -> u64 {
    value.as_u64().unwrap()
}

#[tokio::test]
async fn sequential_invocations_reuse_one_warm_instance() {
    let f = fixture(|_| {}).await;
    let function = python(&*f.store, "warm", "app.pid").await;
    let (first, cold) = f.call(&function, json!({})).await;
    let (second, warm) = f.call(&function, json!({})).await;
    assert_eq!(pid(first), pid(second.clone()));
    assert!(cold.init_duration.is_some());
    assert!(warm.init_duration.is_none());
    let stats = f.invoker.stats();
    assert_eq!((stats.instances_started, stats.warm, stats.busy), (1, 1, 0));

    // An updated configuration gets fresh instances.
    let mut updated = function.clone();
    updated.revision_id = "r2".to_owned();
    let (third, _) = f.call(&updated, json!({})).await;
    assert_ne!(pid(third), pid(second));
    assert_eq!(f.invoker.stats().instances_started, 2);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn the_function_limit_throttles_beyond_its_concurrency() {
    let f = fixture(|_| {}).await;
    let mut gate = python(&*f.store, "gate", "app.block").await;
    gate.reserved_concurrency = Some(2);
    let barrier = common::shared_dir();
    let event = json!({ "dir": barrier.path() });
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let invoker = f.invoker.clone();
            let call = request(&gate, event.clone());
            tokio::spawn(async move { invoker.invoke(call).await })
        })
        .collect();
    eventually("both invocations blocking", || started(barrier.path()) == 2).await;
    assert_eq!(f.invoker.stats().busy, 2);

    let third = f.invoker.invoke(request(&gate, event.clone())).await;
    assert_eq!(
        third.unwrap_err(),
        Error::TooManyRequests(ThrottleReason::FunctionConcurrency)
    );
    // The limit counts the function across its configurations.
    let mut updated = gate.clone();
    updated.revision_id = "r2".to_owned();
    let fourth = f.invoker.invoke(request(&updated, event)).await;
    assert_eq!(
        fourth.unwrap_err(),
        Error::TooManyRequests(ThrottleReason::FunctionConcurrency)
    );

    std::fs::write(barrier.path().join("release"), "").unwrap();
    let mut pids = Vec::new();
    for call in calls {
        pids.push(pid(succeeded(&call.await.unwrap().unwrap())));
    }
    assert_ne!(pids[0], pids[1], "two instances served the two calls");
    assert_eq!(f.invoker.stats().warm, 2);

    let mut closed = gate.clone();
    closed.reserved_concurrency = Some(0);
    assert_eq!(
        f.invoker
            .invoke(request(&closed, json!({})))
            .await
            .unwrap_err(),
        Error::TooManyRequests(ThrottleReason::FunctionConcurrency)
    );
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn the_node_limit_evicts_idle_instances_then_throttles() {
    let f = fixture(|c| c.max_instances = 1).await;
    let first = python(&*f.store, "first", "app.pid").await;
    let blocker = python(&*f.store, "blocker", "app.block").await;
    let first_pid = pid(f.call(&first, json!({})).await.0);

    // The only slot is idle: another function takes it.
    let barrier = common::shared_dir();
    let invoker = f.invoker.clone();
    let blocked = tokio::spawn({
        let request = request(&blocker, json!({"dir": barrier.path()}));
        async move { invoker.invoke(request).await }
    });
    eventually("the blocker starting", || started(barrier.path()) == 1).await;
    assert!(
        !exists(first_pid),
        "the idle instance was evicted and reaped"
    );

    // Now the only slot is busy.
    let throttled = f.invoker.invoke(request(&first, json!({}))).await;
    assert_eq!(
        throttled.unwrap_err(),
        Error::TooManyRequests(ThrottleReason::NodeConcurrency)
    );
    std::fs::write(barrier.path().join("release"), "").unwrap();
    succeeded(&blocked.await.unwrap().unwrap());
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn idle_instances_are_reaped() {
    let f = fixture(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let function = python(&*f.store, "reaped", "app.pid").await;
    let first = pid(f.call(&function, json!({})).await.0);
    assert_eq!(f.invoker.stats().warm, 1);
    eventually("idle reaping", || {
        f.invoker.stats().warm == 0 && !exists(first)
    })
    .await;
    // The next call starts a fresh instance.
    let again = pid(f.call(&function, json!({})).await.0);
    assert_ne!(again, first);
    assert_eq!(f.invoker.stats().instances_started, 2);
    f.invoker.shutdown().await;
    assert!(!exists(again));
}

#[tokio::test]
async fn an_invocation_whose_caller_left_runs_to_its_end() {
    let f = fixture(|_| {}).await;
    let mut gate = python(&*f.store, "abandoned", "app.block").await;
    gate.reserved_concurrency = Some(1);
    let barrier = common::shared_dir();
    let invoker = f.invoker.clone();
    let call = request(&gate, json!({ "dir": barrier.path() }));
    let caller = tokio::spawn(async move { invoker.invoke(call).await });
    eventually("the invocation blocking", || started(barrier.path()) == 1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());

    // The invocation still holds its room until the function returns, then its instance is
    // warm again rather than lost.
    assert_eq!(f.invoker.stats().busy, 1);
    std::fs::write(barrier.path().join("release"), "").unwrap();
    eventually("the instance's return to the pool", || {
        let stats = f.invoker.stats();
        stats.busy == 0 && stats.warm == 1
    })
    .await;
    succeeded(
        &f.invoker
            .invoke(request(&gate, json!({ "dir": barrier.path() })))
            .await
            .unwrap(),
    );
    assert_eq!(f.invoker.stats().instances_started, 1);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_running_instances_too() {
    let f = fixture(|_| {}).await;
    let gate = python(&*f.store, "running", "app.block").await;
    let idle = python(&*f.store, "idle", "app.pid").await;
    let idle_pid = pid(f.call(&idle, json!({})).await.0);
    let barrier = common::shared_dir();
    let invoker = f.invoker.clone();
    let call = request(&gate, json!({ "dir": barrier.path() }));
    let running = tokio::spawn(async move { invoker.invoke(call).await });
    eventually("the invocation blocking", || started(barrier.path()) == 1).await;

    f.invoker.shutdown().await;
    assert!(!exists(idle_pid));
    let body = failed(&running.await.unwrap().unwrap());
    assert_eq!(body["errorType"], json!("Runtime.ExitError"));
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("signal: 9 (SIGKILL)"),
        "{body}"
    );
    let stats = f.invoker.stats();
    assert_eq!((stats.warm, stats.busy), (0, 0));
    let refused = f.invoker.invoke(request(&idle, json!({}))).await;
    assert!(matches!(refused, Err(Error::Service(_))), "{refused:?}");
}

#[tokio::test]
async fn concurrent_cold_starts_of_new_code_share_one_unpacked_folder() {
    let f = fixture(|_| {}).await;
    let function = Arc::new(python(&*f.store, "burst", "app.pid").await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let invoker = f.invoker.clone();
            let function = function.clone();
            tokio::spawn(async move { invoker.invoke(request(&function, json!({}))).await })
        })
        .collect();
    for call in calls {
        succeeded(&call.await.unwrap().unwrap());
    }
    let code = f.dir.path().join("data/code");
    let entries: Vec<_> = std::fs::read_dir(&code)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries, vec![function.code_sha256.to_hex()]);
    f.invoker.shutdown().await;
}
