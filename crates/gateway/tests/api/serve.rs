//! `serve`: a shutdown stops taking connections, lets the requests in flight finish, then
//! returns.

use tokio::net::TcpStream;

use crate::harness::{FUNCTIONS, Gateway};

#[tokio::test]
async fn shutdown_waits_for_requests_in_flight() {
    let mut gateway = Gateway::start().await;
    gateway.create("wait-long").await;
    let request = gateway
        .http
        .post(gateway.url(&format!("{FUNCTIONS}/wait-long/invocations")))
        .body(r#"{"still":"here"}"#);
    let in_flight = tokio::spawn(request.send());
    gateway.invoker.started().await;

    gateway.begin_stop();
    // The listener closes once the shutdown has begun.
    while TcpStream::connect(gateway.addr).await.is_ok() {
        tokio::task::yield_now().await;
    }
    gateway.invoker.release();

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), r#"{"still":"here"}"#);
    gateway.stopped().await.unwrap();
}
