//! [`QueueWorker`]: the claim loop. It claims as many events as it has free slots
//! (`max_inflight`), runs each in its own task, and on shutdown stops claiming and lets the
//! running events finish, up to a drain timeout; what is still running then is left to be
//! redelivered after the queue's visibility timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nimbus_core::{DeadLetters, Invoker};
use nimbus_queue::EventQueue;
use nimbus_store::{RecordWriter, Store};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WorkerConfig;

/// Events claimed in one call at most, so that one worker does not hoard a burst.
const MAX_CLAIM_BATCH: usize = 32;
/// Back-off after a failed claim (queue unreachable), doubling up to the cap.
const CLAIM_RETRY_MIN: Duration = Duration::from_millis(100);
const CLAIM_RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs queued events; cheap to clone.
#[derive(Clone)]
pub struct QueueWorker {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) queue: Arc<dyn EventQueue>,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) dead_letters: Arc<dyn DeadLetters>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) records: RecordWriter,
    pub(crate) config: WorkerConfig,
    /// Sends callbacks; `None` if it could not start (see [`crate::callback::client`]).
    pub(crate) callback_http: Option<reqwest::Client>,
    /// Callback POSTs, which outlive the event they report on.
    pub(crate) callbacks: TaskTracker,
    pub(crate) counters: Arc<Counters>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) claimed: AtomicU64,
    pub(crate) redelivered: AtomicU64,
    pub(crate) succeeded: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) backed_off: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) callbacks_failed: AtomicU64,
}

/// What a worker has done since it started, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub claimed: u64,
    /// Claimed again after another claim expired: the event may have run twice.
    pub redelivered: u64,
    pub succeeded: u64,
    /// Re-scheduled after a function error or timeout (an attempt spent).
    pub retried: u64,
    /// Re-scheduled after a throttle or a Nimbus failure (no attempt spent).
    pub backed_off: u64,
    pub dead_lettered: u64,
    /// Callback URLs that never answered with a 2xx.
    pub callbacks_failed: u64,
}

impl QueueWorker {
    pub fn new(
        queue: Arc<dyn EventQueue>,
        invoker: Arc<dyn Invoker>,
        dead_letters: Arc<dyn DeadLetters>,
        store: Arc<dyn Store>,
        records: RecordWriter,
        config: WorkerConfig,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue,
                invoker,
                dead_letters,
                store,
                records,
                callback_http: crate::callback::client(config.callback_networks),
                config,
                callbacks: TaskTracker::new(),
                counters: Arc::default(),
            }),
        }
    }

    pub fn stats(&self) -> WorkerStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerStats {
            claimed: get(&c.claimed),
            redelivered: get(&c.redelivered),
            succeeded: get(&c.succeeded),
            retried: get(&c.retried),
            backed_off: get(&c.backed_off),
            dead_lettered: get(&c.dead_lettered),
            callbacks_failed: get(&c.callbacks_failed),
        }
    }

    /// Claims and runs events until `shutdown` is cancelled, then drains. The caller still
    /// owns the record writer and should shut it down after this returns.
    pub async fn run(&self, shutdown: CancellationToken) {
        let shared = &self.shared;
        let slots = Arc::new(Semaphore::new(shared.config.max_inflight.max(1)));
        let running = TaskTracker::new();
        let mut claim_retry = CLAIM_RETRY_MIN;
        tracing::info!(consumer = %shared.config.consumer, max_inflight = shared.config.max_inflight, "queue-worker started");
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let mut free = vec![first];
            while free.len() < MAX_CLAIM_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(slot) => free.push(slot),
                    Err(_) => break,
                }
            }
            // Not raced against shutdown: a claim cut short could leave events claimed by
            // nobody until their visibility timeout. It returns within `claim_wait`.
            let claimed = shared
                .queue
                .claim(
                    &shared.config.consumer,
                    free.len(),
                    shared.config.claim_wait,
                )
                .await;
            let deliveries = match claimed {
                Ok(deliveries) => {
                    claim_retry = CLAIM_RETRY_MIN;
                    deliveries
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?claim_retry, "cannot claim events");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(claim_retry) => {}
                    }
                    claim_retry = (claim_retry * 2).min(CLAIM_RETRY_MAX);
                    continue;
                }
            };
            for delivery in deliveries {
                let Some(slot) = free.pop() else { break };
                shared.counters.claimed.fetch_add(1, Ordering::Relaxed);
                let shared = self.shared.clone();
                running.spawn(async move {
                    shared.process(delivery).await;
                    drop(slot);
                });
            }
            if shutdown.is_cancelled() {
                break;
            }
        }
        running.close();
        shared.callbacks.close();
        let drain = async {
            running.wait().await;
            shared.callbacks.wait().await;
        };
        if tokio::time::timeout(shared.config.drain_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = running.len(),
                "drain timeout: running events are left to be redelivered"
            );
        }
        tracing::info!(consumer = %shared.config.consumer, "queue-worker stopped");
    }
}
