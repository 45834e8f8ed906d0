//! The admin endpoint a service serves when `--admin-listen` is given: `GET /healthz` answers
//! `200` while the process runs; `GET /readyz` answers `200` when everything the service
//! depends on (its store, its queue, the services it calls) answers within a second, else
//! `503` naming what did not;
//! `GET /metrics` is Prometheus text, with the queue's depth read at each scrape.
//! Orchestrators point liveness and readiness probes here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use nimbus_queue::{EventQueue, QueueStats};
use nimbus_store::Store;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long one dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency a service needs to do its work.
#[derive(Clone)]
pub enum Dependency {
    Store(Arc<dyn Store>),
    Queue(Arc<dyn EventQueue>),
    /// Another service, reached at `url`: ready when it accepts a connection.
    Peer {
        name: &'static str,
        url: String,
    },
}

impl Dependency {
    fn name(&self) -> &'static str {
        match self {
            Self::Store(_) => "store",
            Self::Queue(_) => "queue",
            Self::Peer { name, .. } => name,
        }
    }

    fn check(&self) -> CheckFuture {
        match self.clone() {
            Self::Store(store) => {
                Box::pin(async move { store.ping().await.map_err(|e| e.to_string()) })
            }
            Self::Queue(queue) => {
                Box::pin(async move { queue.stats().await.map(drop).map_err(|e| e.to_string()) })
            }
            Self::Peer { url, .. } => Box::pin(async move { connect(&url).await }),
        }
    }
}

/// Opens (and drops) a TCP connection to the host and port of `url`.
async fn connect(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in {url}"))?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map(drop)
        .map_err(|e| format!("cannot connect to {url}: {e}"))
}

/// Binds `address` and serves the admin endpoint until `shutdown`, announcing
/// `nimbus: <service> admin on http://<address>`.
pub async fn start(
    service: &str,
    address: SocketAddr,
    dependencies: Vec<Dependency>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the admin endpoint"))?;
    println!(
        "nimbus: {service} admin on http://{}",
        listener.local_addr()?
    );
    let dependencies = Arc::new(dependencies);
    let scraped = dependencies.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "alive"})) }),
        )
        .route("/readyz", get(move || readiness(dependencies.clone())))
        .route("/metrics", get(move || prometheus(scraped.clone())));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the admin endpoint failed");
        }
    });
    Ok(())
}

/// The process's metrics, after reading the queue's depth into its gauges.
async fn prometheus(dependencies: Arc<Vec<Dependency>>) -> impl IntoResponse {
    for dependency in dependencies.iter() {
        if let Dependency::Queue(queue) = dependency {
            match tokio::time::timeout(CHECK_TIMEOUT, queue.stats()).await {
                Ok(Ok(stats)) => publish_queue_stats(&stats),
                Ok(Err(error)) => tracing::warn!(%error, "cannot read the queue's depth"),
                Err(_) => tracing::warn!("the queue's depth did not come in time"),
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        nimbus_telemetry::metrics::render(),
    )
}

fn publish_queue_stats(stats: &QueueStats) {
    for (state, count) in [
        ("ready", stats.ready),
        ("delayed", stats.delayed),
        ("in_flight", stats.in_flight),
    ] {
        metrics::gauge!("nimbus_queue_events", "state" => state).set(count as f64);
    }
    let age = stats.oldest_enqueued_at.map_or(0.0, |oldest| {
        (time::OffsetDateTime::now_utc() - oldest)
            .as_seconds_f64()
            .max(0.0)
    });
    metrics::gauge!("nimbus_queue_oldest_event_age_seconds").set(age);
}

async fn readiness(dependencies: Arc<Vec<Dependency>>) -> (StatusCode, Json<Value>) {
    let checks = dependencies.iter().map(|dependency| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, dependency.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (dependency.name(), outcome)
    });
    let mut ready = true;
    let mut report = Map::new();
    for (name, outcome) in futures::future::join_all(checks).await {
        let value = match outcome {
            Ok(()) => Value::from("ok"),
            Err(error) => {
                ready = false;
                tracing::warn!(dependency = name, %error, "not ready");
                Value::from(error)
            }
        };
        report.insert(name.to_owned(), value);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "not ready" };
    (status, Json(json!({"status": word, "checks": report})))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn psql(sql: &str) {
        let admin = std::env::var("NIMBUS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let status = Command::new("psql")
            .args([&admin, "-qc", sql])
            .status()
            .unwrap();
        assert!(status.success(), "{sql}");
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn readiness_names_the_dependency_that_does_not_answer() {
        let name = format!(
            "nimbus_admin_{}",
            nimbus_core::RequestId::new().as_uuid().simple()
        );
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        let store = nimbus_store::connect(&url).await.unwrap();
        let queue = nimbus_queue::RedisQueue::connect(
            &std::env::var("NIMBUS_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            nimbus_queue::RedisQueueConfig {
                key_prefix: name.clone(),
                group: "workers".into(),
                visibility_timeout: Duration::from_secs(30),
                max_len: None,
            },
        )
        .await
        .unwrap();
        let dependencies = Arc::new(vec![
            Dependency::Store(store),
            Dependency::Queue(Arc::new(queue)),
        ]);
        let (status, Json(body)) = readiness(dependencies.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"], json!({"store": "ok", "queue": "ok"}));

        let unreachable = Dependency::Peer {
            name: "invoker",
            url: format!("http://127.0.0.1:{}", closed_port().await),
        };
        let (status, Json(body)) = readiness(Arc::new(vec![unreachable])).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let error = body["checks"]["invoker"].as_str().unwrap();
        assert!(error.contains("cannot connect"), "{body}");

        // The database goes away under the running service.
        psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
        let (status, Json(body)) = readiness(dependencies).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "not ready");
        assert_ne!(body["checks"]["store"], "ok");
        assert_eq!(body["checks"]["queue"], "ok");
        let _ = Command::new("redis-cli")
            .args(["DEL", &format!("{name}:events")])
            .output();
    }
}
