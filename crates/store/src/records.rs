//! Batched writing of invocation records, off the invocation's hot path.
//!
//! [`RecordWriter::record`] only puts the record in memory; a background task commits what
//! has gathered in one transaction when a batch is full or the oldest record has waited a
//! flush interval. Lookups see a record the moment it is handed over, flushed or not. A failed
//! flush keeps its records and retries; [`RecordWriter::shutdown`] writes what is left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nimbus_core::{InvocationRecord, RequestId};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Result, Store};

#[derive(Debug, Clone)]
pub struct RecordWriterConfig {
    /// Records committed in one transaction at most; a full batch is flushed at once.
    pub max_batch: usize,
    /// How long a record may wait in memory before it is flushed.
    pub flush_interval: Duration,
    /// Unflushed records beyond which [`RecordWriter::record`] waits (back-pressure).
    pub max_pending: usize,
}

impl Default for RecordWriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            flush_interval: Duration::from_millis(50),
            max_pending: 100_000,
        }
    }
}

/// What the writer has done, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordWriterStats {
    pub flushes: u64,
    pub records_written: u64,
    pub largest_batch: usize,
}

/// Hands invocation records to a background flusher. Cheap to clone.
#[derive(Clone)]
pub struct RecordWriter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: RecordWriterConfig,
    buffer: Mutex<Buffer>,
    /// Wakes the flusher: a batch is full, or shutdown began.
    batch_ready: Notify,
    /// Wakes writers waiting for room.
    room: Notify,
    closed: AtomicBool,
    flusher: Mutex<Option<JoinHandle<()>>>,
    flushes: AtomicU64,
    records_written: AtomicU64,
    largest_batch: AtomicUsize,
}

#[derive(Default)]
struct Buffer {
    pending: HashMap<RequestId, InvocationRecord>,
    /// Taken by the flusher and not yet committed; still answered by lookups.
    flushing: HashMap<RequestId, InvocationRecord>,
    oldest_pending: Option<Instant>,
}

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Attempts at the final flush during shutdown before giving up (and saying so).
const SHUTDOWN_ATTEMPTS: u32 = 5;

impl RecordWriter {
    /// Starts the flusher on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>, config: RecordWriterConfig) -> RecordWriter {
        let inner = Arc::new(Inner {
            store,
            config,
            buffer: Mutex::new(Buffer::default()),
            batch_ready: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            flusher: Mutex::new(None),
            flushes: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            largest_batch: AtomicUsize::new(0),
        });
        let task = tokio::spawn(flush_loop(inner.clone()));
        *lock(&inner.flusher) = Some(task);
        RecordWriter { inner }
    }

    /// Hands a record over; the newest record of a request id wins. Waits only when
    /// `max_pending` records are unflushed. After [`shutdown`](Self::shutdown) the record is
    /// written directly.
    pub async fn record(&self, record: InvocationRecord) {
        if self.inner.closed.load(Ordering::Acquire) {
            if let Err(error) = self.inner.store.put_invocations(&[record]).await {
                tracing::error!(%error, "cannot write an invocation record after shutdown");
            }
            return;
        }
        loop {
            let room = self.inner.room.notified();
            {
                let mut buffer = lock(&self.inner.buffer);
                let unflushed = buffer.pending.len() + buffer.flushing.len();
                if unflushed < self.inner.config.max_pending
                    || buffer.pending.contains_key(&record.request_id)
                {
                    buffer.oldest_pending.get_or_insert_with(Instant::now);
                    buffer.pending.insert(record.request_id, record);
                    if buffer.pending.len() >= self.inner.config.max_batch {
                        self.inner.batch_ready.notify_one();
                    }
                    return;
                }
            }
            room.await;
        }
    }

    /// The record of `request_id`, whether still in memory or stored.
    pub async fn get(&self, request_id: &RequestId) -> Result<Option<InvocationRecord>> {
        {
            let buffer = lock(&self.inner.buffer);
            if let Some(record) = buffer
                .pending
                .get(request_id)
                .or_else(|| buffer.flushing.get(request_id))
            {
                return Ok(Some(record.clone()));
            }
        }
        self.inner.store.get_invocation(request_id).await
    }

    /// Flushes everything buffered and stops the flusher. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.batch_ready.notify_one();
        let task = lock(&self.inner.flusher).take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the invocation record flusher failed");
        }
    }

    pub fn stats(&self) -> RecordWriterStats {
        RecordWriterStats {
            flushes: self.inner.flushes.load(Ordering::Relaxed),
            records_written: self.inner.records_written.load(Ordering::Relaxed),
            largest_batch: self.inner.largest_batch.load(Ordering::Relaxed),
        }
    }
}

async fn flush_loop(inner: Arc<Inner>) {
    loop {
        let closing = inner.closed.load(Ordering::Acquire);
        let batch = next_batch(&inner).await;
        if batch.is_empty() {
            if closing {
                return;
            }
            continue;
        }
        write_batch(&inner, batch, closing).await;
    }
}

/// Waits until a batch is due (full, old enough, or shutting down) and moves it to
/// `flushing`. Returns an empty batch when shutting down with nothing left.
async fn next_batch(inner: &Inner) -> Vec<InvocationRecord> {
    loop {
        let ready = inner.batch_ready.notified();
        let deadline = {
            let mut buffer = lock(&inner.buffer);
            let closing = inner.closed.load(Ordering::Acquire);
            let due = buffer
                .oldest_pending
                .map(|oldest| oldest + inner.config.flush_interval);
            let full = buffer.pending.len() >= inner.config.max_batch;
            if closing || full || due.is_some_and(|due| due <= Instant::now()) {
                buffer.oldest_pending = None;
                let pending = std::mem::take(&mut buffer.pending);
                buffer.flushing = pending.clone();
                return pending.into_values().collect();
            }
            due
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = ready => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => ready.await,
        }
    }
}

/// Commits a batch (in chunks of `max_batch`, one transaction each), retrying failures with a
/// capped back-off; during shutdown it gives up after a few attempts.
async fn write_batch(inner: &Inner, batch: Vec<InvocationRecord>, closing: bool) {
    for chunk in batch.chunks(inner.config.max_batch.max(1)) {
        let mut delay = RETRY_FIRST;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match inner.store.put_invocations(chunk).await {
                Ok(()) => {
                    inner.flushes.fetch_add(1, Ordering::Relaxed);
                    inner
                        .records_written
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    inner
                        .largest_batch
                        .fetch_max(chunk.len(), Ordering::Relaxed);
                    break;
                }
                Err(error) if closing && attempt >= SHUTDOWN_ATTEMPTS => {
                    tracing::error!(%error, lost = chunk.len(), "cannot write invocation records at shutdown");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, records = chunk.len(), retry_in = ?delay, "cannot write invocation records; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
    lock(&inner.buffer).flushing.clear();
    inner.room.notify_waiters();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
