//! The durable queue between the gateway and the queue-workers: an accepted `Event`
//! invocation waits here until a worker has finished with it for good, through retries,
//! worker crashes (visibility timeout) and restarts.
//!
//! One [`EventQueue`] trait, two backends: [`RedisQueue`] (Redis Streams, distributed) and
//! [`SqliteQueue`] (one SQLite file, embedded). Delivery is at-least-once.

mod error;
mod event;
mod redis;
mod redis_batch;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

pub use crate::error::{Error, Result};
pub use crate::event::QueuedEvent;
pub use crate::redis::{RedisQueue, RedisQueueConfig};
pub use crate::sqlite::{SqliteQueue, SqliteQueueConfig};

/// A queue of asynchronous invocations with claim/ack semantics.
///
/// A claimed event stays invisible to other consumers until it is acked, re-scheduled with
/// [`retry_later`](EventQueue::retry_later), or its claim outlives the queue's visibility
/// timeout, after which any consumer may claim it again (with [`Delivery::redelivered`] set).
#[async_trait]
pub trait EventQueue: Send + Sync + 'static {
    /// Appends a new event. The event is durable (as durable as the backend is configured to
    /// be) when this returns `Ok`.
    async fn enqueue(&self, event: &QueuedEvent) -> Result<()>;

    /// Waits up to `wait` for ready events and returns at most `max` of them, claimed for
    /// `consumer`. Returns an empty list when nothing became ready in time. Due delayed
    /// events and events whose claim expired are included.
    async fn claim(&self, consumer: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>>;

    /// Extends `consumer`'s claim on `delivery` by a whole visibility timeout from now, so an
    /// event that runs longer than the timeout is not handed to another consumer. `false`
    /// when the claim is gone (acked, re-scheduled, or expired and taken by another).
    async fn touch(&self, consumer: &str, delivery: &Delivery) -> Result<bool>;

    /// Removes a delivered event for good. Acking twice, or acking a delivery whose event is
    /// already gone, is harmless.
    async fn ack(&self, delivery: &Delivery) -> Result<()>;

    /// Atomically acks `delivery` and schedules `event` (the delivered event with its attempts
    /// updated) to become ready at `at`. Does nothing if the delivery was
    /// already acked, so a stale consumer can not schedule a duplicate.
    async fn retry_later(
        &self,
        delivery: &Delivery,
        event: &QueuedEvent,
        at: OffsetDateTime,
    ) -> Result<()>;

    /// How many events wait in each state, for metrics and health.
    async fn stats(&self) -> Result<QueueStats>;

    /// How many events the queue holds in all (ready, delayed and in flight): what a
    /// bound on the backlog counts. Backends answer it more cheaply than [`stats`](Self::stats).
    async fn backlog(&self) -> Result<u64> {
        let stats = self.stats().await?;
        Ok(stats.ready + stats.delayed + stats.in_flight)
    }
}

/// One claimed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The backend's id of this message (a stream entry id, a row id); a re-scheduled event
    /// gets a new one.
    pub id: String,
    pub event: QueuedEvent,
    /// The event was claimed before and that claim expired without an ack: a worker may have
    /// run it already.
    pub redelivered: bool,
}

/// A snapshot of the queue's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Claimable now.
    pub ready: u64,
    /// Re-scheduled, waiting for their retry time.
    pub delayed: u64,
    /// Claimed and not yet acked.
    pub in_flight: u64,
    /// The earliest `enqueued_at` among queued events (see each backend for its precision).
    pub oldest_enqueued_at: Option<OffsetDateTime>,
}

/// Milliseconds since the Unix epoch, the unit both backends keep times in.
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// A duration as whole milliseconds, saturating.
pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
