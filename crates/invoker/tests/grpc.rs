//! The gRPC adapter and [`RemoteInvoker`]: outcomes, large payloads and domain errors cross
//! the wire unchanged; a server that is gone is a service error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{failed, fixture, python, request, succeeded};
use nimbus_core::error::ThrottleReason;
use nimbus_core::{Error, Invoker};
use nimbus_invoker::grpc::RemoteInvoker;
use nimbus_proto::auth::ServiceToken;
use serde_json::json;

#[tokio::test]
async fn grpc_carries_outcomes_and_errors() {
    let f = fixture(|_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let token = ServiceToken::new("invoker-test-token").unwrap();
    let server = tokio::spawn(nimbus_invoker::grpc::serve(
        listener,
        f.invoker.clone() as Arc<dyn Invoker>,
        Some(token.clone()),
        stop.clone().cancelled_owned(),
    ));
    let remote = RemoteInvoker::connect(&url, Some(&token)).await.unwrap();

    let echo = python(&*f.store, "remote", "app.echo").await;
    let mut call = request(&echo, json!({"n": 1}));
    call.want_log_tail = true;
    call.trace_id = Some("Root=1-x".to_owned());
    let outcome = remote.invoke(call.clone()).await.unwrap();
    let body = succeeded(&outcome);
    assert_eq!(body["event"], json!({"n": 1}));
    assert_eq!(body["request_id"], json!(call.request_id.to_string()));
    assert_eq!(body["trace_id"], json!("Root=1-x"));
    let tail = outcome.log_tail.unwrap();
    assert!(
        tail.contains(&format!("REPORT RequestId: {}", call.request_id)),
        "{tail}"
    );
    assert!(outcome.init_duration.is_some());
    assert_eq!(outcome.executed_version, "$LATEST");

    // A payload near Lambda's 6 MB limit, both ways.
    let big = "x".repeat(5 * 1024 * 1024);
    let body = succeeded(
        &remote
            .invoke(request(&echo, json!({ "big": big })))
            .await
            .unwrap(),
    );
    assert_eq!(body["event"]["big"].as_str().unwrap().len(), big.len());

    let fail = python(&*f.store, "remotefail", "app.fail").await;
    let outcome = remote
        .invoke(request(&fail, json!({"x": 1})))
        .await
        .unwrap();
    assert_eq!(failed(&outcome)["errorType"], json!("BadInput"));
    assert_eq!(outcome.error_type.as_deref(), Some("BadInput"));

    let mut closed = echo.clone();
    closed.reserved_concurrency = Some(0);
    let err = remote
        .invoke(request(&closed, json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Error::TooManyRequests(ThrottleReason::FunctionConcurrency)
    );

    // Without the token, or with another, the invoker runs nothing.
    for wrong in [None, Some(ServiceToken::new("not-the-token").unwrap())] {
        let stranger = RemoteInvoker::connect(&url, wrong.as_ref()).await.unwrap();
        let refused = stranger
            .invoke(request(&echo, json!({})))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, Error::Service(m) if m.contains("service token")),
            "{refused:?}"
        );
    }

    stop.cancel();
    server.await.unwrap().unwrap();
    f.invoker.shutdown().await;
    let unreachable = remote.invoke(request(&echo, json!({}))).await.unwrap_err();
    assert!(
        matches!(&unreachable, Error::Service(m) if m.starts_with("invoker unreachable")),
        "{unreachable:?}"
    );
}
