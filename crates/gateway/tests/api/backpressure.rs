//! Back-pressure: a queue holding its bound of events refuses `Event` invokes with `429`
//! (on the embedded SQLite queue and on Redis) and takes them again once drained; a record
//! writer that can not write refuses invocations rather than keep callers waiting.

use std::sync::Arc;
use std::time::Duration;

use nimbus_gateway::GatewayConfig;
use nimbus_queue::{EventQueue, RedisQueue, RedisQueueConfig};
use nimbus_store::RecordWriterConfig;
use tokio::time::Instant;

use crate::harness::{Answer, FUNCTIONS, Gateway};

const BOUND: u64 = 5;
/// How long a test waits for the gateway to notice a change before failing.
const PATIENCE: Duration = Duration::from_secs(10);

fn bounded() -> GatewayConfig {
    GatewayConfig {
        max_queue_backlog: Some(BOUND),
        ..GatewayConfig::default()
    }
}

async fn send_event(gateway: &Gateway, name: &str) -> Answer {
    let url = gateway.url(&format!("{FUNCTIONS}/{name}/invocations"));
    gateway
        .send(
            gateway
                .http
                .post(url)
                .header("x-amz-invocation-type", "Event")
                .body("{}"),
        )
        .await
}

/// Takes every event out of `queue` for good, as workers that finished them would.
async fn drain(queue: &dyn EventQueue) {
    loop {
        let taken = queue.claim("test", 100, Duration::ZERO).await.unwrap();
        if taken.is_empty() {
            return;
        }
        for delivery in &taken {
            queue.ack(delivery).await.unwrap();
        }
    }
}

/// Fills the queue to the bound, sees the next event refused without a trace, drains the
/// queue and sees events accepted again.
async fn refuses_past_the_bound_until_drained(gateway: &Gateway, queue: &dyn EventQueue) {
    gateway.create("echo").await;
    for _ in 0..BOUND {
        let answer = send_event(gateway, "echo").await;
        assert_eq!(answer.status, 202, "{}", answer.text());
    }
    assert_eq!(queue.backlog().await.unwrap(), BOUND);

    let refused = send_event(gateway, "echo").await;
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(
        refused.header("x-amzn-errortype"),
        Some("TooManyRequestsException")
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    let body = refused.json();
    assert_eq!(body["Type"], "User");
    assert_eq!(body["Reason"], "FunctionInvocationRateLimitExceeded");
    assert_eq!(
        body["message"],
        "The event queue is full (backlog 5 of at most 5 events); try again later"
    );
    // Nothing was queued or recorded.
    assert_eq!(queue.backlog().await.unwrap(), BOUND);
    let record = gateway
        .get(&format!("/nimbus/v1/invocations/{}", refused.request_id))
        .await;
    assert_eq!(record.status, 404, "{}", record.text());
    // Synchronous invokes do not queue: they still run.
    let sync = gateway.invoke("echo", "{}").await;
    assert_eq!(sync.status, 200, "{}", sync.text());

    drain(queue).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = send_event(gateway, "echo").await;
        match answer.status {
            202 => break,
            429 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => panic!("the drained queue still refuses: {}", answer.text()),
        }
    }
    assert_eq!(queue.backlog().await.unwrap(), 1);
}

#[tokio::test]
async fn a_full_sqlite_queue_refuses_events_until_drained() {
    let gateway = Gateway::start_full(None, RecordWriterConfig::default(), bounded()).await;
    refuses_past_the_bound_until_drained(&gateway, gateway.queue.as_ref()).await;
}

/// A Redis queue under a key prefix of its own, deleted on drop.
struct TestRedisQueue {
    queue: Arc<RedisQueue>,
    url: String,
}

impl TestRedisQueue {
    async fn new() -> Self {
        let url = std::env::var("NIMBUS_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let config = RedisQueueConfig {
            key_prefix: format!("nimbus-test:{}", uuid::Uuid::new_v4()),
            group: "workers".to_owned(),
            visibility_timeout: Duration::from_secs(60),
            max_len: None,
        };
        let queue = Arc::new(RedisQueue::connect(&url, config).await.unwrap());
        Self { queue, url }
    }
}

impl Drop for TestRedisQueue {
    fn drop(&mut self) {
        if let Ok(mut conn) =
            redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(&self.queue.keys()).query(&mut conn);
        }
    }
}

#[tokio::test]
async fn a_full_redis_queue_refuses_events_until_drained() {
    let redis = TestRedisQueue::new().await;
    let gateway = Gateway::start_full(
        Some(redis.queue.clone()),
        RecordWriterConfig::default(),
        bounded(),
    )
    .await;
    refuses_past_the_bound_until_drained(&gateway, redis.queue.as_ref()).await;
}

#[tokio::test]
async fn without_a_bound_the_queue_takes_every_event() {
    let config = GatewayConfig {
        max_queue_backlog: None,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start_full(None, RecordWriterConfig::default(), config).await;
    gateway.create("echo").await;
    for _ in 0..2 * BOUND {
        let answer = send_event(&gateway, "echo").await;
        assert_eq!(answer.status, 202, "{}", answer.text());
    }
    assert_eq!(gateway.queued().await, 2 * BOUND);
}

/// Records that can not be written wait in memory up to the writer's bound; at the bound the
/// gateway refuses invocations (they would leave records it has no room for) and takes them
/// again once the store writes.
#[tokio::test]
async fn invocations_are_refused_while_records_can_not_be_written() {
    let records = RecordWriterConfig {
        max_pending: 2,
        flush_interval: Duration::from_millis(10),
        ..RecordWriterConfig::default()
    };
    let gateway = Gateway::start_full(None, records, GatewayConfig::default()).await;
    gateway.create("echo").await;
    let raw = sqlx::SqlitePool::connect(&gateway.database_url)
        .await
        .unwrap();
    // The store fails every record write from now on.
    sqlx::query("ALTER TABLE invocations RENAME TO invocations_away")
        .execute(&raw)
        .await
        .unwrap();

    let sync = gateway.invoke("echo", "{}").await;
    assert_eq!(sync.status, 200, "{}", sync.text());
    let event = send_event(&gateway, "echo").await;
    assert_eq!(event.status, 202, "{}", event.text());
    // Both records wait in memory, and are answered from there.
    let record = gateway
        .get(&format!("/nimbus/v1/invocations/{}", event.request_id))
        .await;
    assert_eq!(record.json()["status"], "queued");

    for refused in [
        gateway.invoke("echo", "{}").await,
        send_event(&gateway, "echo").await,
    ] {
        assert_eq!(refused.status, 429, "{}", refused.text());
        assert_eq!(
            refused.header("x-amzn-errortype"),
            Some("TooManyRequestsException")
        );
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap()
                .starts_with("Invocation records are waiting to be written"),
            "{}",
            refused.text()
        );
    }
    assert_eq!(gateway.queued().await, 1, "a refused event was queued");

    sqlx::query("ALTER TABLE invocations_away RENAME TO invocations")
        .execute(&raw)
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = send_event(&gateway, "echo").await;
        match answer.status {
            202 => break,
            429 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => panic!("still refused once the store writes: {}", answer.text()),
        }
    }
    let stored = gateway
        .store
        .get_invocation(&nimbus_core::RequestId::parse(&event.request_id).unwrap())
        .await
        .unwrap()
        .expect("the buffered record was written once the store came back");
    assert_eq!(stored.status, nimbus_core::InvocationStatus::Queued);
}
