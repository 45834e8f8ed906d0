//! Batched writing of invocation records, off the invocation's hot path.
//!
//! [`RecordWriter::record`] only puts the record in memory; a background task commits what
//! has gathered, one transaction per batch, when a batch is full, the oldest record has
//! waited a flush interval, or a caller of [`RecordWriter::record_durably`] waits for one. [`RecordWriter::get`] sees a record the moment it is handed over,
//! flushed or not. Records of one request id merge in memory by the rule the database
//! applies ([`InvocationRecord::supersedes`]), so a lookup answers what will be stored. A
//! failed flush keeps its records and retries with a capped back-off (a store that is down
//! loses nothing; the records are written when it returns);
//! [`RecordWriter::shutdown`] writes everything still buffered before it returns.
//!
//! Memory is bounded by [`RecordWriterConfig::max_pending`]: past it, `record` waits for room
//! (the full buffer is logged once, and [`RecordWriter::is_full`] lets a caller refuse work
//! rather than wait). The `nimbus_records_unflushed` gauge shows how many records wait.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_core::{InvocationRecord, RequestId};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Result, Store};

#[derive(Debug, Clone)]
pub struct RecordWriterConfig {
    /// Records committed in one transaction at most; a full batch is flushed at once.
    pub max_batch: usize,
    /// How long a record may wait in memory before it is flushed.
    pub flush_interval: Duration,
    /// Unflushed records beyond which [`RecordWriter::record`] waits (back-pressure). At a
    /// few hundred bytes a record, the default keeps about 50 MB while the store is down.
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
    /// Transactions committed.
    pub flushes: u64,
    pub records_written: u64,
    pub largest_batch: usize,
}

/// Hands invocation records to a background flusher. Cheap to clone; every clone feeds the
/// same flusher.
#[derive(Clone)]
pub struct RecordWriter {
    inner: Arc<Inner>,
    /// Held across the wait in `shutdown`, so that a second caller waits too.
    flusher: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: RecordWriterConfig,
    buffer: Mutex<Buffer>,
    /// Wakes the flusher: a batch is full, or shutdown began.
    batch_ready: Notify,
    /// Wakes writers waiting for room.
    room: Notify,
    /// How many batches have been committed: batch `n` is the `n`th one taken.
    committed: watch::Sender<u64>,
    flushes: AtomicU64,
    records_written: AtomicU64,
    largest_batch: AtomicUsize,
    /// The buffer was found full and that has been logged; cleared once there is room.
    full: AtomicBool,
}

#[derive(Default)]
struct Buffer {
    pending: HashMap<RequestId, InvocationRecord>,
    /// Taken by the flusher and not yet committed; still answered by lookups.
    flushing: HashMap<RequestId, InvocationRecord>,
    /// When the oldest pending record arrived; `Some` exactly when `pending` is not empty.
    oldest_pending: Option<Instant>,
    /// Batches taken from `pending` so far; `flushing` holds batch number `taken`.
    taken: u64,
    /// A caller waits for a pending record's commit: flush as soon as the flusher is free,
    /// not after the whole interval.
    awaited: bool,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Running,
    /// Shutdown began: records are still buffered, and flushed without waiting.
    Draining,
    /// The flusher has stopped with nothing buffered; records are written directly.
    Stopped,
}

enum Admission {
    Buffered,
    /// The record buffered for its request id stays: this one does not supersede it.
    Dropped,
    /// No room: the record comes back to wait for some.
    Full(InvocationRecord),
    Stopped(InvocationRecord),
}

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl RecordWriter {
    /// Starts the flusher on the current tokio runtime (panics outside one, as
    /// `tokio::spawn` does).
    pub fn start(store: Arc<dyn Store>, config: RecordWriterConfig) -> RecordWriter {
        let config = RecordWriterConfig {
            max_batch: config.max_batch.max(1),
            max_pending: config.max_pending.max(1),
            ..config
        };
        let inner = Arc::new(Inner {
            store,
            config,
            buffer: Mutex::new(Buffer::default()),
            batch_ready: Notify::new(),
            room: Notify::new(),
            committed: watch::Sender::new(0),
            flushes: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            largest_batch: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        });
        let flusher = tokio::spawn(flush_loop(inner.clone()));
        RecordWriter {
            inner,
            flusher: Arc::new(tokio::sync::Mutex::new(Some(flusher))),
        }
    }

    /// Hands a record over. A record buffered for the same request id is replaced only if
    /// this one [supersedes](InvocationRecord::supersedes) it; otherwise this one is dropped,
    /// as the database would ignore it. Never does I/O: it waits
    /// only while `max_pending` records are unflushed. After [`shutdown`](Self::shutdown) has
    /// returned, the record is written directly, and a failure to write it is logged.
    pub async fn record(&self, record: InvocationRecord) {
        let mut record = record;
        loop {
            // Registered before looking, so a flush that frees room meanwhile still wakes us.
            let room = self.inner.room.notified();
            match self.inner.admit(record) {
                Admission::Buffered | Admission::Dropped => return,
                Admission::Stopped(record) => return self.inner.write_directly(record).await,
                Admission::Full(returned) => {
                    record = returned;
                    room.await;
                }
            }
        }
    }

    /// `max_pending` records wait to be written (the store is down or slow): a
    /// [`record`](Self::record) now would wait for room.
    pub fn is_full(&self) -> bool {
        let buffer = lock(&self.inner.buffer);
        buffer.pending.len() + buffer.flushing.len() >= self.inner.config.max_pending
    }

    /// Hands a record over like [`record`](Self::record), then waits until the batch that
    /// holds it is committed: for what must survive a crash of this process that comes
    /// right after, such as an event's final record before the event leaves the queue.
    /// Such a batch is flushed as soon as the flusher is free rather than after the flush
    /// interval (a group commit): records arriving during the commit before share it, so a
    /// lone caller waits for one commit and records stay batched under load.
    pub async fn record_durably(&self, record: InvocationRecord) {
        let request_id = record.request_id;
        self.record(record).await;
        let Some(batch) = self.inner.batch_holding(&request_id) else {
            return;
        };
        let mut committed = self.inner.committed.subscribe();
        // The sender lives as long as `inner`, which `self` holds.
        let _ = committed.wait_for(|&done| done >= batch).await;
    }

    /// The record of `request_id`: pending in memory, being flushed, or stored.
    pub async fn get(&self, request_id: &RequestId) -> Result<Option<InvocationRecord>> {
        if let Some(record) = self.inner.buffered(request_id) {
            return Ok(Some(record));
        }
        self.inner.store.get_invocation(request_id).await
    }

    /// Flushes everything buffered, then stops the flusher. Records handed over meanwhile
    /// are flushed too. A store that is down keeps this waiting (retrying) rather than
    /// losing records: bound it with a timeout if the process must exit regardless.
    /// Idempotent; concurrent callers all wait for the end.
    pub async fn shutdown(&self) {
        {
            let mut buffer = lock(&self.inner.buffer);
            if buffer.state == State::Running {
                buffer.state = State::Draining;
            }
        }
        self.inner.batch_ready.notify_one();
        let mut flusher = self.flusher.lock().await;
        if let Some(task) = flusher.as_mut() {
            if let Err(error) = task.await {
                let mut buffer = lock(&self.inner.buffer);
                buffer.state = State::Stopped;
                let lost = buffer.pending.len() + buffer.flushing.len();
                tracing::error!(%error, lost, "the invocation record flusher failed");
            }
            *flusher = None;
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

impl Inner {
    fn admit(&self, record: InvocationRecord) -> Admission {
        let mut buffer = lock(&self.buffer);
        if buffer.state == State::Stopped {
            return Admission::Stopped(record);
        }
        // Pending records are newer than those being flushed.
        let buffered = buffer
            .pending
            .get(&record.request_id)
            .or_else(|| buffer.flushing.get(&record.request_id));
        if let Some(kept) = buffered
            && !record.supersedes(kept)
        {
            return Admission::Dropped;
        }
        let unflushed = buffer.pending.len() + buffer.flushing.len();
        // Replacing a pending record takes no more room.
        if unflushed >= self.config.max_pending && !buffer.pending.contains_key(&record.request_id)
        {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    unflushed,
                    "the invocation record buffer is full: new records wait until the store \
                     takes some"
                );
            }
            return Admission::Full(record);
        }
        let first = buffer.oldest_pending.is_none();
        buffer.oldest_pending.get_or_insert_with(Instant::now);
        buffer.pending.insert(record.request_id, record);
        // The first record starts the flush interval the flusher must wait out; a full batch
        // is due at once.
        if first || buffer.pending.len() >= self.config.max_batch {
            self.batch_ready.notify_one();
        }
        Admission::Buffered
    }

    fn buffered(&self, request_id: &RequestId) -> Option<InvocationRecord> {
        let buffer = lock(&self.buffer);
        buffer
            .pending
            .get(request_id)
            .or_else(|| buffer.flushing.get(request_id))
            .cloned()
    }

    /// The number of the batch that will commit `request_id`'s buffered record, which is
    /// then flushed without waiting out the whole interval; `None` when nothing is buffered for it
    /// (it is committed already).
    fn batch_holding(&self, request_id: &RequestId) -> Option<u64> {
        let mut buffer = lock(&self.buffer);
        if buffer.pending.contains_key(request_id) {
            buffer.awaited = true;
            self.batch_ready.notify_one();
            Some(buffer.taken + 1)
        } else if buffer.flushing.contains_key(request_id) {
            Some(buffer.taken)
        } else {
            None
        }
    }

    async fn write_directly(&self, record: InvocationRecord) {
        if let Err(error) = self
            .store
            .put_invocations(std::slice::from_ref(&record))
            .await
        {
            tracing::error!(
                %error,
                request_id = %record.request_id,
                "cannot write an invocation record after shutdown; it is lost"
            );
        }
    }

    /// Waits until a batch is due (full, old enough, or shutting down) and moves it to
    /// `flushing`. `None` once shutdown has drained everything.
    async fn next_batch(&self) -> Option<Vec<InvocationRecord>> {
        loop {
            let ready = self.batch_ready.notified();
            let deadline = {
                let mut buffer = lock(&self.buffer);
                let draining = buffer.state == State::Draining;
                match buffer.oldest_pending {
                    None if draining => {
                        // Decided under the lock that `admit` takes, so no record can slip
                        // in behind the last flush.
                        buffer.state = State::Stopped;
                        return None;
                    }
                    None => None,
                    Some(oldest) => {
                        // Someone waits: flush as soon as the flusher is free. Records that
                        // arrive while a commit runs form the next batch (a group commit), so
                        // batches grow with the load and a lone caller waits for one commit.
                        let wait = if buffer.awaited {
                            Duration::ZERO
                        } else {
                            self.config.flush_interval
                        };
                        let due = oldest + wait;
                        let full = buffer.pending.len() >= self.config.max_batch;
                        if draining || full || due <= Instant::now() {
                            return Some(buffer.take_pending());
                        }
                        Some(due)
                    }
                }
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

    /// Commits a batch in transactions of at most `max_batch` records, freeing room as each
    /// one commits.
    async fn write(&self, batch: Vec<InvocationRecord>) {
        for chunk in batch.chunks(self.config.max_batch) {
            self.commit(chunk).await;
            let mut buffer = lock(&self.buffer);
            for record in chunk {
                buffer.flushing.remove(&record.request_id);
            }
            let unflushed = buffer.pending.len() + buffer.flushing.len();
            drop(buffer);
            metrics::gauge!("nimbus_records_unflushed").set(unflushed as f64);
            if unflushed < self.config.max_pending && self.full.swap(false, Ordering::Relaxed) {
                tracing::info!(unflushed, "the invocation record buffer has room again");
            }
            self.room.notify_waiters();
        }
    }

    /// Retries until the store takes the records: they exist nowhere else.
    async fn commit(&self, records: &[InvocationRecord]) {
        let mut delay = RETRY_FIRST;
        loop {
            let started = Instant::now();
            match self.store.put_invocations(records).await {
                Ok(()) => {
                    metrics::histogram!("nimbus_record_flush_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!("nimbus_record_batch_size").record(records.len() as f64);
                    self.flushes.fetch_add(1, Ordering::Relaxed);
                    self.records_written
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    self.largest_batch
                        .fetch_max(records.len(), Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    metrics::counter!("nimbus_record_flush_failures_total").increment(1);
                    let unflushed = {
                        let buffer = lock(&self.buffer);
                        buffer.pending.len() + buffer.flushing.len()
                    };
                    metrics::gauge!("nimbus_records_unflushed").set(unflushed as f64);
                    tracing::warn!(
                        %error,
                        records = records.len(),
                        unflushed,
                        retry_in = ?delay,
                        "cannot write invocation records; will retry"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

impl Buffer {
    fn take_pending(&mut self) -> Vec<InvocationRecord> {
        self.oldest_pending = None;
        self.awaited = false;
        self.taken += 1;
        self.flushing = std::mem::take(&mut self.pending);
        self.flushing.values().cloned().collect()
    }
}

async fn flush_loop(inner: Arc<Inner>) {
    while let Some(batch) = inner.next_batch().await {
        inner.write(batch).await;
        // Only this task takes batches, so the one just written is the last one taken.
        let taken = lock(&inner.buffer).taken;
        inner.committed.send_replace(taken);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicU32;

    use bytes::Bytes;
    use nimbus_core::function::LATEST;
    use nimbus_core::{
        CodeSha256, Cursor, DeadLetter, DeadLetterFilter, EventInvokeConfig, FunctionConfig,
        FunctionName, InvocationFilter, InvocationStatus, InvocationType, RedriveMark,
    };
    use time::OffsetDateTime;
    use tokio::sync::{Semaphore, watch};

    use super::*;
    use crate::Error;

    /// Keeps invocation records in memory; can fail or hold back writes on demand.
    struct MemoryStore {
        records: Mutex<HashMap<RequestId, InvocationRecord>>,
        /// How many records each successful write carried.
        batches: Mutex<Vec<usize>>,
        failures_left: AtomicU32,
        /// When set, each write first takes a permit.
        gate: Option<Semaphore>,
        /// Records stored so far, to wait on.
        stored: watch::Sender<usize>,
    }

    impl MemoryStore {
        fn new() -> Arc<Self> {
            Self::build(0, None)
        }

        fn failing(times: u32) -> Arc<Self> {
            Self::build(times, None)
        }

        fn gated() -> Arc<Self> {
            Self::build(0, Some(Semaphore::new(0)))
        }

        fn build(failures: u32, gate: Option<Semaphore>) -> Arc<Self> {
            Arc::new(Self {
                records: Mutex::default(),
                batches: Mutex::default(),
                failures_left: AtomicU32::new(failures),
                gate,
                stored: watch::Sender::new(0),
            })
        }

        fn stored(&self, id: &RequestId) -> Option<InvocationRecord> {
            lock(&self.records).get(id).cloned()
        }

        fn batches(&self) -> Vec<usize> {
            lock(&self.batches).clone()
        }

        async fn wait_for(&self, count: usize) {
            self.stored
                .subscribe()
                .wait_for(|stored| *stored >= count)
                .await
                .unwrap();
        }
    }

    #[async_trait::async_trait]
    impl crate::FunctionVersions for MemoryStore {
        async fn publish_version(
            &self,
            _: &FunctionConfig,
            _: &str,
            _: &str,
        ) -> Result<FunctionConfig> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_function_version(
            &self,
            _: &FunctionName,
            _: &str,
        ) -> Result<Option<FunctionConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_function_versions(
            &self,
            _: &FunctionName,
            _: u64,
            _: usize,
        ) -> Result<Vec<FunctionConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn last_version_number(&self, _: &FunctionName) -> Result<Option<u64>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_function_version(&self, _: &FunctionName, _: &str) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn create_alias(&self, _: &nimbus_core::Alias) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn update_alias(&self, _: &nimbus_core::Alias, _: &str) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_alias(&self, _: &FunctionName, _: &str) -> Result<Option<nimbus_core::Alias>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_aliases(&self, _: &FunctionName) -> Result<Vec<nimbus_core::Alias>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_alias(&self, _: &FunctionName, _: &str) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_tags(
            &self,
            _: &FunctionName,
        ) -> Result<Option<std::collections::BTreeMap<String, String>>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn put_tags(
            &self,
            _: &FunctionName,
            _: &std::collections::BTreeMap<String, String>,
        ) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
    }

    #[async_trait::async_trait]
    impl crate::ProvisionedConcurrency for MemoryStore {
        async fn put_provisioned_concurrency(
            &self,
            _: &nimbus_core::ProvisionedConcurrencyConfig,
        ) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_provisioned_concurrency(
            &self,
            _: &FunctionName,
            _: &str,
        ) -> Result<Option<nimbus_core::ProvisionedConcurrencyConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_provisioned_concurrency(
            &self,
            _: &FunctionName,
        ) -> Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_all_provisioned_concurrency(
            &self,
        ) -> Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_provisioned_concurrency(&self, _: &FunctionName, _: &str) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn set_provisioned_allocation(
            &self,
            _: &FunctionName,
            _: &str,
            _: u32,
            _: nimbus_core::ProvisionedStatus,
            _: Option<&str>,
        ) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
    }

    #[async_trait::async_trait]
    impl crate::HttpTriggers for MemoryStore {
        async fn create_function_url(&self, _: &nimbus_core::FunctionUrlConfig) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn update_function_url(&self, _: &nimbus_core::FunctionUrlConfig) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_function_url(
            &self,
            _: &FunctionName,
            _: Option<&str>,
        ) -> Result<Option<nimbus_core::FunctionUrlConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_function_url_by_id(
            &self,
            _: &str,
        ) -> Result<Option<nimbus_core::FunctionUrlConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_function_urls(
            &self,
            _: &FunctionName,
        ) -> Result<Vec<nimbus_core::FunctionUrlConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_function_url(&self, _: &FunctionName, _: Option<&str>) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn create_route(&self, _: &nimbus_core::HttpRoute) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_route(&self, _: &str) -> Result<Option<nimbus_core::HttpRoute>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_routes(&self) -> Result<Vec<nimbus_core::HttpRoute>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_route(&self, _: &str) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
    }

    #[async_trait::async_trait]
    impl Store for MemoryStore {
        async fn ping(&self) -> Result<()> {
            Ok(())
        }
        async fn put_code(&self, _: &CodeSha256, _: Bytes) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_code(&self, _: &CodeSha256) -> Result<Option<Bytes>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn create_function(&self, _: &FunctionConfig) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_function(&self, _: &FunctionName) -> Result<Option<FunctionConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_functions(
            &self,
            _: Option<&FunctionName>,
            _: usize,
        ) -> Result<Vec<FunctionConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn update_function(&self, _: &FunctionConfig, _: &str) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_function(&self, _: &FunctionName) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }

        async fn put_invocations(&self, records: &[InvocationRecord]) -> Result<()> {
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            let fail = self
                .failures_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Err(Error::Config("the database is down".to_owned()));
            }
            let mut stored = lock(&self.records);
            for record in records {
                stored.insert(record.request_id, record.clone());
            }
            lock(&self.batches).push(records.len());
            self.stored.send_replace(stored.len());
            Ok(())
        }

        async fn get_invocation(&self, id: &RequestId) -> Result<Option<InvocationRecord>> {
            Ok(self.stored(id))
        }

        async fn list_invocations(
            &self,
            _: &InvocationFilter,
            _: Option<&Cursor>,
            _: usize,
        ) -> Result<Vec<InvocationRecord>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn put_event_invoke_config(
            &self,
            _: &FunctionName,
            _: &str,
            _: &EventInvokeConfig,
        ) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_event_invoke_config(
            &self,
            _: &FunctionName,
            _: &str,
        ) -> Result<Option<EventInvokeConfig>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_event_invoke_configs(
            &self,
            _: &FunctionName,
        ) -> Result<Vec<(String, EventInvokeConfig)>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_event_invoke_config(&self, _: &FunctionName, _: &str) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn put_dead_letter(&self, _: &DeadLetter) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn get_dead_letter(&self, _: &RequestId) -> Result<Option<DeadLetter>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn list_dead_letters(
            &self,
            _: &DeadLetterFilter,
            _: Option<&Cursor>,
            _: usize,
        ) -> Result<Vec<DeadLetter>> {
            unreachable!("the record writer writes invocations only")
        }
        async fn mark_redriven(&self, _: &RequestId, _: &RedriveMark) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn unmark_redriven(&self, _: &RequestId, _: &RedriveMark) -> Result<()> {
            unreachable!("the record writer writes invocations only")
        }
        async fn delete_dead_letter(&self, _: &RequestId) -> Result<bool> {
            unreachable!("the record writer writes invocations only")
        }
        async fn purge_dead_letters(&self, _: &DeadLetterFilter) -> Result<u64> {
            unreachable!("the record writer writes invocations only")
        }
    }

    fn record(status: InvocationStatus) -> InvocationRecord {
        InvocationRecord {
            request_id: RequestId::new(),
            function_name: FunctionName::parse("f").unwrap(),
            function_version: LATEST.to_owned(),
            invocation_type: InvocationType::Event,
            status,
            attempts: 0,
            created_at: OffsetDateTime::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error_type: None,
            error_message: None,
            attempt_history: Vec::new(),
            redrive_of: None,
        }
    }

    fn config(max_batch: usize, flush_interval: Duration) -> RecordWriterConfig {
        RecordWriterConfig {
            max_batch,
            flush_interval,
            ..RecordWriterConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_waits_one_flush_interval_at_most() {
        let store = MemoryStore::new();
        let interval = Duration::from_millis(50);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        let r = record(InvocationStatus::Queued);
        writer.record(r.clone()).await;

        tokio::time::sleep(interval - Duration::from_millis(1)).await;
        assert_eq!(
            store.stored(&r.request_id),
            None,
            "flushed before the interval"
        );
        assert_eq!(writer.get(&r.request_id).await.unwrap(), Some(r.clone()));

        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(store.stored(&r.request_id), Some(r));
        assert_eq!(writer.stats().flushes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_reaching_an_idle_flusher_is_flushed_after_one_interval() {
        let store = MemoryStore::new();
        let interval = Duration::from_millis(50);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        // The flusher has found nothing to do and waits.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = record(InvocationStatus::Queued);
        writer.record(r.clone()).await;
        tokio::time::sleep(interval + Duration::from_millis(1)).await;
        assert_eq!(store.stored(&r.request_id), Some(r));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_flushed_without_waiting_for_the_interval() {
        let store = MemoryStore::new();
        let interval = Duration::from_secs(3600);
        let writer = RecordWriter::start(store.clone(), config(10, interval));
        let start = Instant::now();
        for _ in 0..25 {
            writer.record(record(InvocationStatus::Queued)).await;
        }
        store.wait_for(20).await;
        assert!(start.elapsed() < interval);
        assert!(store.batches().iter().all(|&size| size <= 10));
        writer.shutdown().await;
        assert_eq!(writer.stats().records_written, 25);
        assert_eq!(writer.stats().largest_batch, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_durable_record_returns_once_its_batch_is_committed() {
        let store = MemoryStore::gated();
        let interval = Duration::from_secs(3600);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        let start = Instant::now();
        let other = record(InvocationStatus::Running);
        writer.record(other.clone()).await;
        let done = record(InvocationStatus::Succeeded);
        let durable = tokio::spawn({
            let (writer, done) = (writer.clone(), done.clone());
            async move { writer.record_durably(done).await }
        });
        // The store holds the batch back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!durable.is_finished(), "returned before the commit");
        assert_eq!(store.stored(&done.request_id), None);

        store.gate.as_ref().unwrap().add_permits(1);
        durable.await.unwrap();
        assert_eq!(store.stored(&done.request_id), Some(done.clone()));
        assert_eq!(store.batches(), vec![2], "one batch for both records");
        assert_eq!(store.stored(&other.request_id), Some(other));
        assert!(start.elapsed() < interval, "waited out the flush interval");
    }

    #[tokio::test(start_paused = true)]
    async fn records_of_one_request_coalesce_to_the_latest() {
        let store = MemoryStore::new();
        let writer = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let queued = record(InvocationStatus::Queued);
        let done = InvocationRecord {
            status: InvocationStatus::Succeeded,
            attempts: 1,
            ..queued.clone()
        };
        writer.record(queued.clone()).await;
        writer.record(done.clone()).await;
        assert_eq!(
            writer.get(&queued.request_id).await.unwrap(),
            Some(done.clone())
        );
        writer.shutdown().await;
        assert_eq!(store.batches(), [1]);
        assert_eq!(store.stored(&queued.request_id), Some(done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_record_does_not_replace_one_it_does_not_supersede() {
        let store = MemoryStore::new();
        let writer = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let running = record(InvocationStatus::Running);
        let queued = InvocationRecord {
            status: InvocationStatus::Queued,
            ..running.clone()
        };
        let done = InvocationRecord {
            status: InvocationStatus::Succeeded,
            attempts: 1,
            ..running.clone()
        };
        let id = running.request_id;
        writer.record(running.clone()).await;
        writer.record(queued).await;
        assert_eq!(writer.get(&id).await.unwrap(), Some(running.clone()));
        writer.record(done.clone()).await;
        writer.record(running).await;
        assert_eq!(writer.get(&id).await.unwrap(), Some(done.clone()));
        writer.shutdown().await;
        assert_eq!(store.stored(&id), Some(done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_being_flushed_is_not_replaced_by_a_stale_one() {
        let store = MemoryStore::gated();
        let interval = Duration::from_millis(50);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        let done = record(InvocationStatus::Succeeded);
        let late = InvocationRecord {
            status: InvocationStatus::Running,
            ..done.clone()
        };
        writer.record(done.clone()).await;
        // The flusher holds `done` inside the store's write.
        tokio::time::sleep(interval + Duration::from_millis(1)).await;
        writer.record(late).await;
        assert_eq!(
            writer.get(&done.request_id).await.unwrap(),
            Some(done.clone())
        );
        store.gate.as_ref().unwrap().add_permits(2);
        writer.shutdown().await;
        assert_eq!(store.stored(&done.request_id), Some(done));
        assert_eq!(writer.stats().flushes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flush_is_retried_and_loses_nothing() {
        let store = MemoryStore::failing(3);
        let interval = Duration::from_millis(50);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        let r = record(InvocationStatus::Running);
        writer.record(r.clone()).await;

        // The first attempt has failed: the record is still answered from memory.
        tokio::time::sleep(interval + Duration::from_millis(1)).await;
        assert_eq!(store.stored(&r.request_id), None);
        assert_eq!(writer.get(&r.request_id).await.unwrap(), Some(r.clone()));

        writer.shutdown().await;
        assert_eq!(store.stored(&r.request_id), Some(r));
        assert_eq!(writer.stats().flushes, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_being_flushed_is_still_found() {
        let store = MemoryStore::gated();
        let interval = Duration::from_millis(50);
        let writer = RecordWriter::start(store.clone(), config(512, interval));
        let r = record(InvocationStatus::Running);
        writer.record(r.clone()).await;

        // The flusher has taken the record and is held inside the store's write.
        tokio::time::sleep(interval + Duration::from_millis(1)).await;
        assert_eq!(store.stored(&r.request_id), None);
        assert_eq!(writer.get(&r.request_id).await.unwrap(), Some(r.clone()));

        store.gate.as_ref().unwrap().add_permits(1);
        writer.shutdown().await;
        assert_eq!(store.stored(&r.request_id), Some(r));
    }

    #[tokio::test(start_paused = true)]
    async fn record_waits_while_too_many_are_unflushed() {
        let store = MemoryStore::gated();
        let writer = RecordWriter::start(
            store.clone(),
            RecordWriterConfig {
                max_batch: 1,
                max_pending: 2,
                ..RecordWriterConfig::default()
            },
        );
        let records: Vec<_> = (0..3).map(|_| record(InvocationStatus::Queued)).collect();
        writer.record(records[0].clone()).await;
        writer.record(records[1].clone()).await;

        // Both are held in a write the store does not finish: no room for a third.
        let third = writer.record(records[2].clone());
        assert!(
            tokio::time::timeout(Duration::from_secs(1), third)
                .await
                .is_err()
        );

        assert!(writer.is_full());

        store.gate.as_ref().unwrap().add_permits(records.len());
        writer.record(records[2].clone()).await;
        writer.shutdown().await;
        for r in &records {
            assert_eq!(store.stored(&r.request_id).as_ref(), Some(r));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_shutdown_records_are_written_directly() {
        let store = MemoryStore::new();
        let writer = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        writer.shutdown().await;
        writer.shutdown().await;
        let r = record(InvocationStatus::Succeeded);
        writer.record(r.clone()).await;
        assert_eq!(store.stored(&r.request_id), Some(r));
    }
}
