//! The bound on the event queue's backlog: once the queue holds `max_queue_backlog` events
//! (ready, delayed and in flight), `Event` invokes are refused with `429` instead of letting
//! the queue grow without limit while the workers fall behind.
//!
//! The queue is not asked on every request. The gateway keeps the backlog the queue last
//! reported, asked for again in the background at most every [`REFRESH_INTERVAL`] while
//! events arrive, plus the events it has admitted since. No enqueue of this gateway is in
//! flight while the queue is asked, so its own admissions are counted exactly and one gateway
//! never passes the bound. What it can not see until the next report is other gateways'
//! admissions (each may add up to its arrival rate times the interval) and the workers'
//! progress (a drained queue is noticed within the interval).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nimbus_queue::EventQueue;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tokio::time::Instant;

/// How old the reported backlog may grow before an admission asks the queue again.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// How long the queue may take to report; enqueues wait meanwhile.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

/// The queue holds its bound of events: the answer to an `Event` invoke is `429`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull {
    /// The backlog as the gateway counts it.
    pub backlog: u64,
    pub limit: u64,
}

/// Admits `Event` invokes while the queue's backlog is under its bound.
pub(crate) struct BacklogBound {
    limit: u64,
    queue: Arc<dyn EventQueue>,
    estimate: Arc<Mutex<Estimate>>,
    /// Admissions hold it shared from the check to the end of their enqueue; a report is
    /// asked for holding it alone, so that it is exact.
    enqueues: Arc<RwLock<()>>,
}

#[derive(Debug, Default)]
struct Estimate {
    /// The backlog the queue last reported.
    reported: u64,
    /// `admitted` when that report was asked for.
    admitted_at_report: u64,
    /// When the last report was asked for; `None` before the first.
    asked_at: Option<Instant>,
    /// Events admitted so far (less those whose enqueue did not happen).
    admitted: u64,
    /// A report is being asked for.
    refreshing: bool,
}

impl Estimate {
    /// The reported backlog plus what was admitted since.
    fn backlog(&self) -> u64 {
        self.reported + self.admitted.saturating_sub(self.admitted_at_report)
    }
}

impl BacklogBound {
    pub(crate) fn new(limit: u64, queue: Arc<dyn EventQueue>) -> Self {
        Self {
            limit,
            queue,
            estimate: Arc::default(),
            enqueues: Arc::default(),
        }
    }

    /// Counts one more event in the backlog, or refuses it when the bound is reached. The
    /// event must be enqueued while the [`Admission`] lives, then
    /// [`confirmed`](Admission::confirmed); dropped unconfirmed, it is taken back.
    pub(crate) async fn admit(&self) -> Result<Admission, QueueFull> {
        let enqueueing = self.enqueues.clone().read_owned().await;
        let mut estimate = lock(&self.estimate);
        let backlog = estimate.backlog();
        let stale = estimate
            .asked_at
            .is_none_or(|asked| asked.elapsed() >= REFRESH_INTERVAL);
        if stale && !estimate.refreshing {
            estimate.refreshing = true;
            tokio::spawn(refresh(
                self.queue.clone(),
                self.estimate.clone(),
                self.enqueues.clone(),
            ));
        }
        if backlog >= self.limit {
            return Err(QueueFull {
                backlog,
                limit: self.limit,
            });
        }
        estimate.admitted += 1;
        Ok(Admission {
            estimate: Some(self.estimate.clone()),
            _enqueueing: enqueueing,
        })
    }
}

/// One admitted event, counted in the backlog.
#[must_use = "an admission dropped unconfirmed is taken back"]
pub(crate) struct Admission {
    /// `None` once confirmed.
    estimate: Option<Arc<Mutex<Estimate>>>,
    _enqueueing: OwnedRwLockReadGuard<()>,
}

impl Admission {
    /// The event is in the queue: it stays counted.
    pub(crate) fn confirmed(mut self) {
        self.estimate = None;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(estimate) = self.estimate.take() {
            let mut estimate = lock(&estimate);
            estimate.admitted = estimate.admitted.saturating_sub(1);
        }
    }
}

/// Asks the queue for its backlog, once no enqueue is in flight, and makes it the new base of
/// the estimate. A queue that does not answer keeps the old base until the next interval; the
/// enqueue itself will fail and say why.
async fn refresh(
    queue: Arc<dyn EventQueue>,
    estimate: Arc<Mutex<Estimate>>,
    enqueues: Arc<RwLock<()>>,
) {
    let _alone = enqueues.write().await;
    let admitted = lock(&estimate).admitted;
    let asked_at = Instant::now();
    let reported = tokio::time::timeout(REFRESH_TIMEOUT, queue.backlog()).await;
    let mut estimate = lock(&estimate);
    estimate.refreshing = false;
    estimate.asked_at = Some(asked_at);
    match reported {
        Ok(Ok(backlog)) => {
            estimate.reported = backlog;
            estimate.admitted_at_report = admitted;
            metrics::gauge!("nimbus_event_queue_backlog").set(backlog as f64);
        }
        Err(_) => tracing::warn!(
            timeout = ?REFRESH_TIMEOUT,
            "the event queue is slow to report its backlog"
        ),
        Ok(Err(error)) => tracing::warn!(%error, "cannot read the event queue's backlog"),
    }
}

/// Locks the estimate, carrying on past poisoning: it is consistent between statements.
fn lock(estimate: &Mutex<Estimate>) -> MutexGuard<'_, Estimate> {
    estimate
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use nimbus_core::{FunctionName, RequestId};
    use nimbus_queue::{QueuedEvent, SqliteQueue, SqliteQueueConfig};

    use super::*;

    async fn queue() -> Arc<SqliteQueue> {
        let config = SqliteQueueConfig {
            visibility_timeout: Duration::from_secs(60),
        };
        Arc::new(
            SqliteQueue::connect("sqlite::memory:", config)
                .await
                .unwrap(),
        )
    }

    fn event() -> QueuedEvent {
        let name = FunctionName::parse("f").unwrap();
        QueuedEvent::new(RequestId::new(), name, "$LATEST", Bytes::from_static(b"{}"))
    }

    #[tokio::test]
    async fn admits_up_to_the_bound_and_again_once_the_queue_drains() {
        let queue = queue().await;
        let bound = BacklogBound::new(2, queue.clone());
        for _ in 0..2 {
            let admission = bound.admit().await.unwrap();
            queue.enqueue(&event()).await.unwrap();
            admission.confirmed();
        }
        assert_eq!(
            bound.admit().await.err(),
            Some(QueueFull {
                backlog: 2,
                limit: 2
            })
        );

        let taken = queue.claim("w", 1, Duration::ZERO).await.unwrap();
        queue.ack(&taken[0]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let admission = loop {
            match bound.admit().await {
                Ok(admission) => break admission,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(full) => panic!("the drained queue was never noticed: {full:?}"),
            }
        };
        // Not confirmed: the slot is given back.
        drop(admission);
        let admission = bound.admit().await.unwrap();
        assert_eq!(
            bound.admit().await.err(),
            Some(QueueFull {
                backlog: 2,
                limit: 2
            })
        );
        drop(admission);
    }

    #[test]
    fn the_estimate_adds_admissions_since_the_report() {
        let mut estimate = Estimate {
            reported: 10,
            admitted_at_report: 4,
            admitted: 7,
            ..Estimate::default()
        };
        assert_eq!(estimate.backlog(), 13);
        // Admissions taken back below the report's base count as none.
        estimate.admitted = 2;
        assert_eq!(estimate.backlog(), 10);
    }
}
