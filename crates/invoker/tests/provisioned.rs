//! Provisioned concurrency with real runtime processes: instances of a published version
//! started and initialised before any invocation, a first invocation without a cold start,
//! and instances let go once the configuration is deleted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{eventually, fixture, python, request, succeeded};
use nimbus_core::{FunctionConfig, FunctionName, ProvisionedConcurrencyConfig, ProvisionedStatus};
use nimbus_store::Store;
use serde_json::json;

async fn publish(store: &dyn Store, latest: &FunctionConfig) -> FunctionConfig {
    store.create_function(latest).await.unwrap();
    store
        .publish_version(latest, "", "v1-revision")
        .await
        .unwrap()
}

async fn provision(store: &dyn Store, name: &str, qualifier: &str, requested: u32) {
    store
        .put_provisioned_concurrency(&ProvisionedConcurrencyConfig {
            function_name: FunctionName::parse(name).unwrap(),
            qualifier: qualifier.to_owned(),
            requested,
            allocated: 0,
            status: ProvisionedStatus::InProgress,
            status_reason: None,
            last_modified: time::OffsetDateTime::now_utc(),
        })
        .await
        .unwrap();
}

/// Waits until the stored configuration shows `status`, and returns it.
async fn stored_status(
    store: &dyn Store,
    name: &str,
    qualifier: &str,
    status: ProvisionedStatus,
) -> ProvisionedConcurrencyConfig {
    let name = FunctionName::parse(name).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let config = store
            .get_provisioned_concurrency(&name, qualifier)
            .await
            .unwrap()
            .unwrap();
        if config.status == status {
            return config;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status:?}: {config:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn provisioned_instances_are_initialised_before_traffic_and_reaped_once_deleted() {
    let f = fixture(|c| {
        c.provision_period = Duration::from_millis(50);
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let latest = python(&*f.store, "warm", "app.pid").await;
    let version = publish(&*f.store, &latest).await;
    provision(&*f.store, "warm", "1", 2).await;

    let ready = stored_status(&*f.store, "warm", "1", ProvisionedStatus::Ready).await;
    assert_eq!((ready.requested, ready.allocated), (2, 2));
    assert_eq!(ready.status_reason, None);
    let stats = f.invoker.stats();
    assert_eq!((stats.warm, stats.busy, stats.instances_started), (2, 0, 2));

    // Idle well past the idle timeout: provisioned instances stay.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(f.invoker.stats().warm, 2);

    // The first invocation is warm: no init in its report, no instance started for it.
    let mut call = request(&version, json!({}));
    call.want_log_tail = true;
    let outcome = f.invoke(call).await;
    succeeded(&outcome);
    let tail = outcome.log_tail.unwrap();
    assert!(tail.contains("REPORT RequestId: "), "{tail}");
    assert!(!tail.contains("Init Duration"), "{tail}");
    assert_eq!(outcome.init_duration, None);
    assert_eq!(outcome.executed_version, "1");
    assert_eq!(f.invoker.stats().instances_started, 2);
    assert_eq!(f.invoker.stats().warm, 2);

    // $LATEST is not provisioned: its first call is a cold start.
    let (_, cold) = f.call(&latest, json!({})).await;
    assert!(cold.init_duration.is_some());
    assert_eq!(f.invoker.stats().instances_started, 3);

    // Without the configuration, the instances idle out like any other.
    assert!(
        f.store
            .delete_provisioned_concurrency(&version.name, "1")
            .await
            .unwrap()
    );
    eventually("reaping of the provisioned instances", || {
        f.invoker.stats().warm == 0
    })
    .await;
    assert_eq!(f.invoker.stats().instances_started, 3);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn an_alias_provisions_its_main_version() {
    let f = fixture(|c| c.provision_period = Duration::from_millis(50)).await;
    let latest = python(&*f.store, "aliased", "app.pid").await;
    let version = publish(&*f.store, &latest).await;
    f.store
        .create_alias(&nimbus_core::Alias {
            function_name: version.name.clone(),
            name: "live".to_owned(),
            function_version: "1".to_owned(),
            description: String::new(),
            routing: Default::default(),
            revision_id: "a1".to_owned(),
        })
        .await
        .unwrap();
    provision(&*f.store, "aliased", "live", 1).await;
    stored_status(&*f.store, "aliased", "live", ProvisionedStatus::Ready).await;
    assert_eq!(f.invoker.stats().warm, 1);
    let outcome = f.invoke(request(&version, json!({}))).await;
    succeeded(&outcome);
    assert_eq!(outcome.init_duration, None);
    assert_eq!(f.invoker.stats().instances_started, 1);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn instances_that_cannot_initialise_fail_the_allocation() {
    let f = fixture(|c| c.provision_period = Duration::from_millis(50)).await;
    let latest = python(&*f.store, "broken", "missing_module.handler").await;
    publish(&*f.store, &latest).await;
    provision(&*f.store, "broken", "1", 1).await;
    let failed = stored_status(&*f.store, "broken", "1", ProvisionedStatus::Failed).await;
    assert_eq!(failed.allocated, 0);
    assert!(failed.status_reason.is_some());
    assert_eq!(f.invoker.stats().warm, 0);
    f.invoker.shutdown().await;
}
