//! Model-based property test of the queue's state machine: random sequences of enqueue,
//! claim, touch, ack and retry_later (current and stale deliveries alike) run against each
//! backend and against a small in-memory model of what the queue must hold. No event is lost,
//! none is handed to a second consumer while claimed, acked and postponed events do not come
//! back, and a stale delivery changes nothing.
//!
//! Claims never expire here (a long visibility timeout), so the model needs no clock.

// Shared helpers outside `#[test]` functions, which clippy.toml does not cover.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{Attempt, FunctionName, RequestId};
use nimbus_queue::{
    Delivery, EventQueue, QueuedEvent, RedisQueue, RedisQueueConfig, SqliteQueue, SqliteQueueConfig,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use time::OffsetDateTime;

const VISIBILITY: Duration = Duration::from_secs(600);
const CONSUMERS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Op {
    Enqueue,
    Claim {
        consumer: usize,
        max: usize,
    },
    Touch(usize),
    Ack(usize),
    /// Retry at a time already past: claimable again at once.
    RetryNow(usize),
    /// Retry in an hour: out of reach for the rest of the test.
    RetryLater(usize),
    /// Ack, retry or touch a delivery that was already acked or re-scheduled.
    Stale {
        pick: usize,
        action: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let pick = any::<usize>();
    prop_oneof![
        3 => Just(Op::Enqueue),
        3 => (0..CONSUMERS.len(), 1..4usize).prop_map(|(consumer, max)| Op::Claim { consumer, max }),
        1 => pick.prop_map(Op::Touch),
        2 => pick.prop_map(Op::Ack),
        1 => pick.prop_map(Op::RetryNow),
        1 => pick.prop_map(Op::RetryLater),
        1 => (pick, 0..3u8).prop_map(|(pick, action)| Op::Stale { pick, action }),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Ready,
    Claimed {
        consumer: usize,
        delivery: Box<Delivery>,
    },
    Postponed,
    Acked,
}

/// What the queue must hold: each event's state, by the number in its payload.
#[derive(Default)]
struct Model {
    events: Vec<State>,
    /// Deliveries that were acked or re-scheduled, with the consumer that held them.
    stale: Vec<(usize, Delivery)>,
}

impl Model {
    fn with_state(&self, wanted: impl Fn(&State) -> bool) -> BTreeSet<usize> {
        (0..self.events.len())
            .filter(|&n| wanted(&self.events[n]))
            .collect()
    }

    fn ready(&self) -> BTreeSet<usize> {
        self.with_state(|s| *s == State::Ready)
    }

    /// The `pick`-th claimed event (modulo their number), if any is claimed.
    fn claimed(&self, pick: usize) -> Option<(usize, usize, Delivery)> {
        let claimed: Vec<usize> = self
            .with_state(|s| matches!(s, State::Claimed { .. }))
            .into_iter()
            .collect();
        let n = *claimed.get(pick % claimed.len().max(1))?;
        match &self.events[n] {
            State::Claimed { consumer, delivery } => Some((n, *consumer, (**delivery).clone())),
            _ => None,
        }
    }

    fn release(&mut self, n: usize, consumer: usize, delivery: Delivery, next: State) {
        self.events[n] = next;
        self.stale.push((consumer, delivery));
    }
}

fn event(n: usize) -> QueuedEvent {
    QueuedEvent::new(
        RequestId::new(),
        FunctionName::parse("echo").unwrap(),
        "$LATEST",
        Bytes::from(n.to_string()),
    )
}

fn number(delivery: &Delivery) -> usize {
    std::str::from_utf8(&delivery.event.payload)
        .ok()
        .and_then(|text| text.parse().ok())
        .expect("every payload is its event's number")
}

fn failed(mut event: QueuedEvent) -> QueuedEvent {
    let now = OffsetDateTime::now_utc();
    event.attempts.push(Attempt {
        started_at: now,
        finished_at: now,
        error_type: Some("Unhandled".into()),
        error_message: Some("boom".into()),
    });
    event
}

async fn run(queue: &dyn EventQueue, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Enqueue => {
                queue.enqueue(&event(model.events.len())).await.unwrap();
                model.events.push(State::Ready);
            }
            Op::Claim { consumer, max } => {
                let ready = model.ready();
                let got = queue
                    .claim(CONSUMERS[consumer], max, Duration::ZERO)
                    .await
                    .unwrap();
                prop_assert_eq!(got.len(), max.min(ready.len()), "claimed of {:?}", ready);
                for delivery in got {
                    let n = number(&delivery);
                    prop_assert!(
                        model.events[n] == State::Ready,
                        "event {} handed out while {:?}",
                        n,
                        model.events[n]
                    );
                    prop_assert!(!delivery.redelivered, "no claim expired");
                    model.events[n] = State::Claimed {
                        consumer,
                        delivery: Box::new(delivery),
                    };
                }
            }
            Op::Touch(pick) => {
                if let Some((_, consumer, delivery)) = model.claimed(pick) {
                    let held = queue.touch(CONSUMERS[consumer], &delivery).await.unwrap();
                    prop_assert!(held, "a current claim is extended");
                }
            }
            Op::Ack(pick) => {
                if let Some((n, consumer, delivery)) = model.claimed(pick) {
                    queue.ack(&delivery).await.unwrap();
                    model.release(n, consumer, delivery, State::Acked);
                }
            }
            Op::RetryNow(pick) | Op::RetryLater(pick) => {
                if let Some((n, consumer, delivery)) = model.claimed(pick) {
                    let (at, next) = if matches!(op, Op::RetryNow(_)) {
                        (
                            OffsetDateTime::now_utc() - time::Duration::seconds(1),
                            State::Ready,
                        )
                    } else {
                        (
                            OffsetDateTime::now_utc() + time::Duration::hours(1),
                            State::Postponed,
                        )
                    };
                    let retried = failed(delivery.event.clone());
                    queue.retry_later(&delivery, &retried, at).await.unwrap();
                    model.release(n, consumer, delivery, next);
                }
            }
            Op::Stale { pick, action } => {
                let Some((consumer, delivery)) =
                    model.stale.get(pick % model.stale.len().max(1)).cloned()
                else {
                    continue;
                };
                match action {
                    0 => queue.ack(&delivery).await.unwrap(),
                    1 => {
                        let at = OffsetDateTime::now_utc() - time::Duration::seconds(1);
                        let retried = failed(delivery.event.clone());
                        queue.retry_later(&delivery, &retried, at).await.unwrap();
                    }
                    _ => {
                        let held = queue.touch(CONSUMERS[consumer], &delivery).await.unwrap();
                        prop_assert!(!held, "a released claim can not be extended");
                    }
                }
            }
        }
        let stats = queue.stats().await.unwrap();
        let in_flight = model
            .with_state(|s| matches!(s, State::Claimed { .. }))
            .len();
        let waiting = model
            .with_state(|s| matches!(s, State::Ready | State::Postponed))
            .len();
        prop_assert_eq!(stats.in_flight, in_flight as u64);
        // Redis counts a due retry as delayed until a claim moves it: compare the sum.
        prop_assert_eq!(stats.ready + stats.delayed, waiting as u64);
    }

    // Nothing lost: draining the queue yields exactly the events the model says are ready.
    let mut drained = BTreeSet::new();
    loop {
        let got = queue.claim("drain", 100, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        for delivery in got {
            prop_assert!(drained.insert(number(&delivery)), "drained twice");
        }
    }
    prop_assert_eq!(drained, model.ready());
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sqlite_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("queue.db").display());
    let config = SqliteQueueConfig {
        visibility_timeout: VISIBILITY,
    };
    let queue = SqliteQueue::connect(&url, config).await.unwrap();
    run(&queue, ops).await
}

/// Deletes a case's keys when it ends, passing or not.
struct RedisKeys {
    url: String,
    keys: Vec<String>,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        if let Ok(mut conn) =
            ::redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            let _: ::redis::RedisResult<()> = ::redis::cmd("DEL").arg(&self.keys).query(&mut conn);
        }
    }
}

async fn redis_case(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let url =
        std::env::var("NIMBUS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = RedisQueueConfig {
        key_prefix: format!("nimbus-test:{}", uuid::Uuid::new_v4()),
        group: "workers".into(),
        visibility_timeout: VISIBILITY,
        max_len: None,
    };
    let queue = Arc::new(RedisQueue::connect(&url, config).await.unwrap());
    let _keys = RedisKeys {
        keys: queue.keys().iter().map(|k| k.to_string()).collect(),
        url,
    };
    run(&*queue, ops).await
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sqlite_queue_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(sqlite_case(ops))?;
    }

    #[test]
    fn redis_queue_follows_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        runtime().block_on(redis_case(ops))?;
    }
}
