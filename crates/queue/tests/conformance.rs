//! One suite for every `EventQueue` backend: Redis (a fresh key prefix per test, deleted
//! afterwards; `NIMBUS_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and SQLite (a
//! file in a temporary folder).

// Shared helpers outside `#[test]` functions, which clippy.toml does not cover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{Attempt, FunctionName, RequestId};
use nimbus_queue::{
    Delivery, EventQueue, QueueStats, QueuedEvent, RedisQueue, RedisQueueConfig, SqliteQueue,
    SqliteQueueConfig,
};
use time::OffsetDateTime;
use tokio::time::Instant;

const LONG_VISIBILITY: Duration = Duration::from_secs(30);
const SHORT_VISIBILITY: Duration = Duration::from_millis(300);
/// How long a test waits for something that should happen soon before failing.
const PATIENCE: Duration = Duration::from_secs(10);
/// Both backends keep times in whole milliseconds.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// A queue plus whatever must live as long as it (and clean up after it).
struct Fixture {
    queue: Arc<dyn EventQueue>,
    _guard: Box<dyn Send>,
}

async fn sqlite(visibility_timeout: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let queue = SqliteQueue::connect(&url, SqliteQueueConfig { visibility_timeout })
        .await
        .unwrap();
    Fixture {
        queue: Arc::new(queue),
        _guard: Box::new(dir),
    }
}

struct RedisKeys {
    url: String,
    keys: Vec<String>,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        // Best effort, synchronously: drop can not await.
        if let Ok(mut conn) =
            ::redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            let _: ::redis::RedisResult<()> = ::redis::cmd("DEL").arg(&self.keys).query(&mut conn);
        }
    }
}

fn redis_url() -> String {
    std::env::var("NIMBUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn redis_with(visibility_timeout: Duration, max_len: Option<usize>) -> Fixture {
    let url = redis_url();
    let config = RedisQueueConfig {
        key_prefix: format!("nimbus-test:{}", uuid::Uuid::new_v4()),
        group: "workers".into(),
        visibility_timeout,
        max_len,
    };
    let queue = RedisQueue::connect(&url, config).await.unwrap();
    let keys = queue.keys().map(str::to_owned).to_vec();
    Fixture {
        queue: Arc::new(queue),
        _guard: Box::new(RedisKeys { url, keys }),
    }
}

async fn redis(visibility_timeout: Duration) -> Fixture {
    redis_with(visibility_timeout, None).await
}

/// Now, truncated to the millisecond both backends store.
fn now_ms() -> OffsetDateTime {
    let ns = OffsetDateTime::now_utc().unix_timestamp_nanos();
    OffsetDateTime::from_unix_timestamp_nanos(ns / 1_000_000 * 1_000_000).unwrap()
}

fn event(n: usize) -> QueuedEvent {
    let mut event = QueuedEvent::new(
        RequestId::new(),
        FunctionName::parse("echo").unwrap(),
        "$LATEST",
        Bytes::from(format!("{{\"n\":{n}}}")),
    );
    event.enqueued_at = now_ms();
    event
}

fn failed(mut event: QueuedEvent, message: &str) -> QueuedEvent {
    event.attempts.push(Attempt {
        started_at: now_ms(),
        finished_at: now_ms(),
        error_type: Some("Unhandled".into()),
        error_message: Some(message.into()),
    });
    event
}

/// Claims until something arrives or [`PATIENCE`] runs out.
async fn claim_eventually(queue: &dyn EventQueue, consumer: &str) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let got = queue
            .claim(consumer, 10, Duration::from_millis(100))
            .await
            .unwrap();
        if !got.is_empty() {
            return got;
        }
    }
    panic!("nothing became claimable within {PATIENCE:?}");
}

async fn assert_empty(queue: &dyn EventQueue) {
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats, QueueStats::default());
}

mod cases {
    use super::*;

    pub(super) async fn round_trip(f: Fixture) {
        let q = &*f.queue;
        let mut sent = event(1);
        sent.payload = Bytes::from_static(b"{\"bin\":\"\x00\xff\"}");
        sent.trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        sent.callback_url = Some("http://127.0.0.1:1/cb".into());
        let sent = failed(sent, "earlier");
        q.enqueue(&sent).await.unwrap();

        let got = q.claim("a", 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, sent);
        assert!(!got[0].redelivered);
        q.ack(&got[0]).await.unwrap();

        assert!(q.claim("a", 10, Duration::ZERO).await.unwrap().is_empty());
        assert_empty(q).await;
    }

    pub(super) async fn claim_waits_then_returns_empty(f: Fixture) {
        let wait = Duration::from_millis(300);
        let start = Instant::now();
        let got = f.queue.claim("a", 10, wait).await.unwrap();
        let waited = start.elapsed();
        assert!(got.is_empty());
        assert!(waited >= wait, "returned after {waited:?}");
        assert!(
            waited < wait + Duration::from_secs(3),
            "returned after {waited:?}"
        );
    }

    pub(super) async fn enqueue_wakes_a_waiting_claim(f: Fixture) {
        let queue = f.queue.clone();
        let start = Instant::now();
        let waiting =
            tokio::spawn(
                async move { queue.claim("a", 10, Duration::from_secs(20)).await.unwrap() },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = event(1);
        f.queue.enqueue(&sent).await.unwrap();
        let got = waiting.await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, sent);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    pub(super) async fn ready_events_come_in_order(f: Fixture) {
        let q = &*f.queue;
        let sent: Vec<_> = (0..10).map(event).collect();
        for e in &sent {
            q.enqueue(e).await.unwrap();
        }
        let mut got = Vec::new();
        while got.len() < sent.len() {
            let batch = q.claim("a", 3, Duration::from_secs(1)).await.unwrap();
            assert!(!batch.is_empty() && batch.len() <= 3);
            got.extend(batch);
        }
        let ids =
            |events: Vec<&QueuedEvent>| events.iter().map(|e| e.request_id).collect::<Vec<_>>();
        assert_eq!(
            ids(got.iter().map(|d| &d.event).collect()),
            ids(sent.iter().collect())
        );
    }

    pub(super) async fn retry_later_hides_until_due(f: Fixture) {
        let q = &*f.queue;
        q.enqueue(&event(1)).await.unwrap();
        let first = q
            .claim("a", 1, Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        let retried = failed(first.event.clone(), "boom");
        let due = OffsetDateTime::now_utc() + Duration::from_millis(700);
        q.retry_later(&first, &retried, due).await.unwrap();

        assert!(q.claim("b", 10, Duration::ZERO).await.unwrap().is_empty());
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.in_flight), (0, 1, 0));

        let got = claim_eventually(q, "b").await;
        let claimed_at = OffsetDateTime::now_utc();
        assert!(
            claimed_at + CLOCK_SLACK >= due,
            "claimable {} early",
            due - claimed_at
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].event, retried);
        assert_eq!(got[0].event.attempts.len(), 1);
        assert_eq!(
            got[0].event.attempts[0].error_message.as_deref(),
            Some("boom")
        );
        assert!(!got[0].redelivered);
        assert_ne!(got[0].id, first.id);
        q.ack(&got[0]).await.unwrap();
        assert_empty(q).await;
    }

    pub(super) async fn unacked_is_redelivered_after_visibility_timeout(f: Fixture) {
        let q = &*f.queue;
        let sent = event(1);
        q.enqueue(&sent).await.unwrap();
        let claimed_from = Instant::now();
        let first = q.claim("a", 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(!first[0].redelivered);
        assert!(q.claim("b", 10, Duration::ZERO).await.unwrap().is_empty());

        let again = claim_eventually(q, "b").await;
        let hidden_for = claimed_from.elapsed();
        assert!(
            hidden_for + CLOCK_SLACK >= SHORT_VISIBILITY,
            "redelivered after {hidden_for:?}"
        );
        assert_eq!(again.len(), 1);
        assert!(again[0].redelivered);
        assert_eq!(again[0].event, sent);

        q.ack(&again[0]).await.unwrap();
        // The first consumer wakes up late: its ack is harmless.
        q.ack(&first[0]).await.unwrap();
        assert_empty(q).await;
    }

    pub(super) async fn touch_keeps_a_claim_past_the_visibility_timeout(f: Fixture) {
        let q = &*f.queue;
        q.enqueue(&event(1)).await.unwrap();
        let first = q.claim("a", 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(first.len(), 1);
        // Heartbeats at a third of the timeout hold the event for three whole timeouts.
        let held_until = Instant::now() + SHORT_VISIBILITY * 3;
        while Instant::now() < held_until {
            assert!(q.touch("a", &first[0]).await.unwrap());
            assert!(q.claim("b", 10, Duration::ZERO).await.unwrap().is_empty());
            tokio::time::sleep(SHORT_VISIBILITY / 3).await;
        }
        assert!(!q.touch("b", &first[0]).await.unwrap(), "b never held it");

        // Without heartbeats it expires, and the old holder can not take it back.
        let again = claim_eventually(q, "b").await;
        assert_eq!(again.len(), 1);
        assert!(again[0].redelivered);
        assert!(!q.touch("a", &again[0]).await.unwrap());
        q.ack(&again[0]).await.unwrap();
        assert!(!q.touch("b", &again[0]).await.unwrap(), "acked");
        assert_empty(q).await;
    }

    pub(super) async fn concurrent_enqueues_all_arrive(f: Fixture) {
        let sent: Vec<QueuedEvent> = (0..300).map(event).collect();
        let enqueues = sent.iter().map(|e| f.queue.enqueue(e));
        for result in futures::future::join_all(enqueues).await {
            result.unwrap();
        }
        let mut received = HashSet::new();
        while received.len() < sent.len() {
            let got = claim_eventually(&*f.queue, "a").await;
            for delivery in got {
                assert!(
                    received.insert(delivery.event.request_id),
                    "delivered twice"
                );
                f.queue.ack(&delivery).await.unwrap();
            }
        }
        let expected: HashSet<_> = sent.iter().map(|e| e.request_id).collect();
        assert_eq!(received, expected);
        assert_empty(&*f.queue).await;
    }

    pub(super) async fn consumers_never_share_an_event(f: Fixture) {
        let sent: Vec<_> = (0..100).map(event).collect();
        for e in &sent {
            f.queue.enqueue(e).await.unwrap();
        }
        let consumer = |name: &'static str| {
            let queue = f.queue.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let batch = queue
                        .claim(name, 7, Duration::from_millis(200))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return seen;
                    }
                    for delivery in batch {
                        assert!(!delivery.redelivered);
                        seen.push(delivery.event.request_id);
                        queue.ack(&delivery).await.unwrap();
                    }
                }
            })
        };
        let (a, b) = (consumer("a"), consumer("b"));
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        let a_set: HashSet<_> = a.iter().copied().collect();
        let b_set: HashSet<_> = b.iter().copied().collect();
        assert_eq!(a_set.len(), a.len(), "a saw an event twice");
        assert_eq!(b_set.len(), b.len(), "b saw an event twice");
        assert!(a_set.is_disjoint(&b_set));
        let all: HashSet<_> = sent.iter().map(|e| e.request_id).collect();
        assert_eq!(&a_set | &b_set, all);
        assert_empty(&*f.queue).await;
    }

    pub(super) async fn stats_count_each_state(f: Fixture) {
        let q = &*f.queue;
        assert_empty(q).await;
        let mut oldest = event(0);
        oldest.enqueued_at -= Duration::from_secs(60);
        q.enqueue(&oldest).await.unwrap();
        q.enqueue(&event(1)).await.unwrap();
        q.enqueue(&event(2)).await.unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.in_flight), (3, 0, 0));
        assert_eq!(stats.oldest_enqueued_at, Some(oldest.enqueued_at));

        let claimed = q.claim("a", 2, Duration::from_secs(1)).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.in_flight), (1, 0, 2));

        let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        q.retry_later(&claimed[1], &failed(claimed[1].event.clone(), "x"), later)
            .await
            .unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.ready, stats.delayed, stats.in_flight), (1, 1, 1));
        assert_eq!(stats.oldest_enqueued_at, Some(oldest.enqueued_at));
    }

    pub(super) async fn backlog_counts_every_state(f: Fixture) {
        let q = &*f.queue;
        assert_eq!(q.backlog().await.unwrap(), 0);
        for n in 0..4 {
            q.enqueue(&event(n)).await.unwrap();
        }
        let claimed = q.claim("a", 3, Duration::from_secs(1)).await.unwrap();
        assert_eq!(claimed.len(), 3);
        let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        q.retry_later(&claimed[0], &failed(claimed[0].event.clone(), "x"), later)
            .await
            .unwrap();
        // One ready, one delayed, two in flight.
        assert_eq!(q.backlog().await.unwrap(), 4);
        q.ack(&claimed[1]).await.unwrap();
        assert_eq!(q.backlog().await.unwrap(), 3);
    }

    pub(super) async fn acks_are_idempotent(f: Fixture) {
        let q = &*f.queue;
        q.enqueue(&event(1)).await.unwrap();
        let got = q
            .claim("a", 1, Duration::from_secs(1))
            .await
            .unwrap()
            .remove(0);
        q.ack(&got).await.unwrap();
        q.ack(&got).await.unwrap();
        // A retry of a delivery already acked must not resurrect it.
        let later = OffsetDateTime::now_utc();
        q.retry_later(&got, &failed(got.event.clone(), "late"), later)
            .await
            .unwrap();
        assert_empty(q).await;
    }

    pub(super) async fn identical_retries_stay_distinct(f: Fixture) {
        let q = &*f.queue;
        let same = event(1);
        q.enqueue(&same).await.unwrap();
        q.enqueue(&same).await.unwrap();
        let got = q.claim("a", 2, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 2);
        let due = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        let retried = failed(same.clone(), "boom");
        for delivery in &got {
            q.retry_later(delivery, &retried, due).await.unwrap();
        }
        assert_eq!(q.stats().await.unwrap().delayed, 2);
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            conformance!(@case $backend, round_trip, LONG_VISIBILITY);
            conformance!(@case $backend, claim_waits_then_returns_empty, LONG_VISIBILITY);
            conformance!(@case $backend, enqueue_wakes_a_waiting_claim, LONG_VISIBILITY);
            conformance!(@case $backend, ready_events_come_in_order, LONG_VISIBILITY);
            conformance!(@case $backend, retry_later_hides_until_due, LONG_VISIBILITY);
            conformance!(@case $backend, unacked_is_redelivered_after_visibility_timeout, SHORT_VISIBILITY);
            conformance!(@case $backend, touch_keeps_a_claim_past_the_visibility_timeout, SHORT_VISIBILITY);
            conformance!(@case $backend, concurrent_enqueues_all_arrive, LONG_VISIBILITY);
            conformance!(@case $backend, consumers_never_share_an_event, LONG_VISIBILITY);
            conformance!(@case $backend, stats_count_each_state, LONG_VISIBILITY);
            conformance!(@case $backend, backlog_counts_every_state, LONG_VISIBILITY);
            conformance!(@case $backend, acks_are_idempotent, LONG_VISIBILITY);
            conformance!(@case $backend, identical_retries_stay_distinct, LONG_VISIBILITY);
        }
    };
    (@case $backend:ident, $case:ident, $visibility:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            cases::$case(super::$backend($visibility).await).await;
        }
    };
}

conformance!(sqlite);
conformance!(redis);

#[tokio::test]
async fn redis_refuses_enqueues_beyond_max_len() {
    let f = redis_with(LONG_VISIBILITY, Some(2)).await;
    f.queue.enqueue(&event(1)).await.unwrap();
    f.queue.enqueue(&event(2)).await.unwrap();
    assert!(matches!(
        f.queue.enqueue(&event(3)).await,
        Err(nimbus_queue::Error::Full(2))
    ));
}

#[tokio::test]
async fn redis_recovers_when_its_keys_vanish() {
    let url = redis_url();
    let config = RedisQueueConfig {
        key_prefix: format!("nimbus-test:{}", uuid::Uuid::new_v4()),
        group: "workers".into(),
        visibility_timeout: LONG_VISIBILITY,
        max_len: None,
    };
    let queue = RedisQueue::connect(&url, config).await.unwrap();
    let _guard = RedisKeys {
        url: url.clone(),
        keys: queue.keys().map(str::to_owned).to_vec(),
    };
    let mut conn = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // The stream, and its consumer group with it, disappears (FLUSHDB, an operator's DEL).
    let _: () = ::redis::cmd("DEL")
        .arg(queue.keys()[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    let sent = event(1);
    queue.enqueue(&sent).await.unwrap();
    let got = queue.claim("a", 1, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, sent);
    queue.ack(&got[0]).await.unwrap();
    assert_eq!(queue.stats().await.unwrap(), QueueStats::default());
}
