//! End to end, Postgres going away under the distributed topology: the services reach the
//! database through a TCP proxy the test cuts (every connection dropped, new ones refused)
//! and restores. While it is cut, the gateway still accepts events for functions it has
//! seen, the queue-worker still runs them, and sync invokes still answer; once it is
//! restored, every record reaches Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Platform, function_dir, psql_query, shared_dir};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Keeps a file per request it ran, so the test sees events run while Postgres is away.
const FUNCTION: &str = r#"
import os, pathlib

# Instances may run as users of their own: a retry on another must be able to rewrite.
os.umask(0)

def handler(event, context):
    pathlib.Path(os.environ["STATE_DIR"], context.aws_request_id).write_text("ran")
    return {"ok": True}
"#;

/// Events sent while Postgres is away.
const EVENTS: usize = 10;
/// How long the test waits for what should happen before failing. Generous: a connection
/// attempt the pool began while Postgres was away may wait its acquire timeout (30 s).
const PATIENCE: Duration = Duration::from_secs(120);

/// A TCP proxy in front of Postgres. Cut, it closes every connection and its port, so new
/// connections are refused, as from a database that is down; restored, it listens again on
/// the same port.
struct PostgresProxy {
    port: u16,
    up: watch::Sender<bool>,
}

impl PostgresProxy {
    async fn start(upstream: SocketAddr) -> PostgresProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, watch_up) = watch::channel(true);
        tokio::spawn(proxy(listener, upstream, watch_up));
        PostgresProxy { port, up }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Serves while up; once cut, drops the listener and every connection and waits to be
/// restored, then listens on the same port again.
async fn proxy(mut listener: TcpListener, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let port = listener.local_addr().unwrap().port();
    let connections = up.clone();
    loop {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    tokio::spawn(forward(client, upstream, connections.clone()));
                }
                _ = up.wait_for(|up| !*up) => break,
            }
        }
        drop(listener);
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the proxy's port is free again");
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Dropping both ends closes them: the service sees its connection die.
        _ = up.wait_for(|up| !*up) => {}
    }
}

/// `url` with its host and port replaced by the proxy's.
fn through_proxy(url: &str, port: u16) -> String {
    let (credentials, rest) = url.split_once('@').unwrap();
    let (_, database) = rest.split_once('/').unwrap();
    format!("{credentials}@127.0.0.1:{port}/{database}")
}

/// The host and port of a `postgres://user@host:port/db` URL.
fn upstream_of(url: &str) -> SocketAddr {
    let authority = url.split_once('@').unwrap().1.split('/').next().unwrap();
    let authority = authority.replace("localhost", "127.0.0.1");
    authority.parse().unwrap()
}

async fn send(platform: &Platform, name: &str, invocation_type: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(platform.invoke_url(name))
        .header("X-Amz-Invocation-Type", invocation_type)
        .body("{}")
        .send()
        .await
        .unwrap()
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-amzn-RequestId"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// Polls until `done` holds, failing after [`PATIENCE`] with `what`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_accepted_and_run_while_postgres_is_down_and_recorded_once_it_returns() {
    let real_url = Arc::new(Mutex::new(String::new()));
    let admin = std::env::var("NIMBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let proxy = PostgresProxy::start(upstream_of(&admin)).await;
    // Every lookup of a function past the first asks the database again: while it is away,
    // each is answered from the stale entry.
    let envs = [("NIMBUS_FUNCTION_CACHE_TTL", "1ms")];
    let platform = Platform::distributed_through(&envs, |url| {
        *real_url.lock().unwrap() = url.to_owned();
        through_proxy(url, proxy.port)
    });
    let real_url = real_url.lock().unwrap().clone();

    let state = shared_dir();
    let code = function_dir(&[("app.py", FUNCTION)]);
    let env = format!("STATE_DIR={}", state.path().display());
    platform.deploy(
        code.path(),
        "steady",
        "python3.12",
        &["--handler", "app.handler", "--env", &env],
    );

    // Warm: the gateway and the worker have read the function, the invoker has its code.
    let warm = send(&platform, "steady", "Event").await;
    assert_eq!(warm.status(), 202);
    let warm_id = request_id(&warm);
    eventually("the warm-up event to succeed", || {
        psql_query(
            &real_url,
            &format!("SELECT status FROM invocations WHERE request_id = '{warm_id}'"),
        )
        .trim()
            == "succeeded"
    })
    .await;
    let sync = send(&platform, "steady", "RequestResponse").await;
    assert_eq!(sync.status(), 200);

    proxy.cut();
    let mut ids = Vec::new();
    for _ in 0..EVENTS {
        let response = send(&platform, "steady", "Event").await;
        assert_eq!(
            response.status(),
            202,
            "an event refused while Postgres is down: {:?}",
            response.text().await
        );
        ids.push(request_id(&response));
    }
    let sync = send(&platform, "steady", "RequestResponse").await;
    assert_eq!(
        sync.status(),
        200,
        "a sync invoke failed while Postgres is down: {:?}",
        sync.text().await
    );
    ids.push(request_id(&sync));
    // The worker runs the events while Postgres is still away.
    eventually("every event to run while Postgres is down", || {
        ids.iter().all(|id| state.path().join(id).exists())
    })
    .await;
    let stored = psql_query(
        &real_url,
        &format!(
            "SELECT count(*) FROM invocations WHERE request_id IN ({})",
            quoted(&ids)
        ),
    );
    assert_eq!(
        stored.trim(),
        "0",
        "records reached Postgres through a cut proxy"
    );

    proxy.restore();
    eventually("every record to reach Postgres as succeeded", || {
        let succeeded = psql_query(
            &real_url,
            &format!(
                "SELECT count(*) FROM invocations WHERE status = 'succeeded' AND request_id IN ({})",
                quoted(&ids)
            ),
        );
        succeeded.trim() == ids.len().to_string()
    })
    .await;
    drop(platform);
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",")
}
