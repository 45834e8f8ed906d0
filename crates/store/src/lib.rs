//! Nimbus' durable state: functions, their versions, aliases and tags, their code, invocation
//! records, event invoke configurations, provisioned concurrency, HTTP triggers (function
//! URLs and routes) and dead letters.
//!
//! One [`Store`] trait with two backends, picked by the database URL: the embedded SQLite
//! file that `nimbus dev` uses, and Postgres for the distributed topology. Both pass the same
//! conformance suite. Invocation records are written in batches by [`RecordWriter`], never one
//! commit per request.
//!
//! Timestamps are stored in UTC with microsecond precision (what Postgres keeps): a record
//! reads back equal to what was written once its times are truncated to the microsecond.

mod cache;
mod error;
mod postgres;
mod provisioned;
mod records;
mod rows;
mod sql;
mod sqlite;
mod sync;
mod timestamp;
mod triggers;
mod versions;

use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::{
    CodeSha256, Cursor, DeadLetter, DeadLetterFilter, EventInvokeConfig, FunctionConfig,
    FunctionName, InvocationFilter, InvocationRecord, RedriveMark, RequestId,
};

pub use cache::{CachedStore, DEFAULT_FUNCTION_CACHE_TTL};
pub use error::{Error, Result};
pub use postgres::PostgresStore;
pub use provisioned::ProvisionedConcurrency;
pub use records::{RecordWriter, RecordWriterConfig, RecordWriterStats};
pub use sqlite::SqliteStore;
pub use triggers::HttpTriggers;
pub use versions::{FunctionVersions, resolve};

#[async_trait::async_trait]
/// Everything Nimbus keeps; versions, aliases and tags are in [`FunctionVersions`],
/// provisioned concurrency in [`ProvisionedConcurrency`], function URLs and routes in
/// [`HttpTriggers`].
pub trait Store:
    FunctionVersions + ProvisionedConcurrency + HttpTriggers + Send + Sync + 'static
{
    /// Checks the database answers (readiness probes).
    async fn ping(&self) -> Result<()>;

    /// Stores a code zip under its hash. Idempotent: the same hash twice is one row.
    async fn put_code(&self, sha: &CodeSha256, zip: Bytes) -> Result<()>;

    async fn get_code(&self, sha: &CodeSha256) -> Result<Option<Bytes>>;

    /// Creates a function; [`Error::Conflict`] if the name is taken. Its code must have been
    /// stored with [`put_code`](Self::put_code) first (a foreign key enforces it).
    async fn create_function(&self, function: &FunctionConfig) -> Result<()>;

    async fn get_function(&self, name: &FunctionName) -> Result<Option<FunctionConfig>>;

    /// Functions ordered by name, starting after `after`, at most `limit` of them.
    async fn list_functions(
        &self,
        after: Option<&FunctionName>,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>>;

    /// Replaces a function's configuration if its stored `revision_id` is still
    /// `expected_revision`: [`Error::NotFound`] if it is gone, [`Error::RevisionMismatch`] if
    /// someone else updated it first.
    async fn update_function(
        &self,
        function: &FunctionConfig,
        expected_revision: &str,
    ) -> Result<()>;

    /// Deletes a function; `false` if there was none. Code rows stay (other functions or
    /// queued events may still name them).
    async fn delete_function(&self, name: &FunctionName) -> Result<bool>;

    /// Inserts or replaces invocation records, all in one transaction. A stored record is
    /// replaced only by one that [supersedes](InvocationRecord::supersedes) it. When a request
    /// id appears more than once, its records are applied in order under the same rule: a
    /// `queued` given after a `running` in one call is dropped, like one given in a later call.
    async fn put_invocations(&self, records: &[InvocationRecord]) -> Result<()>;

    async fn get_invocation(&self, request_id: &RequestId) -> Result<Option<InvocationRecord>>;

    /// Records matching `filter`, newest first (by `created_at`, then request id), strictly
    /// after `after` in that order, at most `limit`.
    async fn list_invocations(
        &self,
        filter: &InvocationFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>>;

    /// Creates or replaces the event invoke configuration of `name:qualifier`;
    /// [`Error::NotFound`] if the function does not exist. Deleting the function deletes it.
    async fn put_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> Result<()>;

    async fn get_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>>;

    /// Every configuration of the function, by qualifier.
    async fn list_event_invoke_configs(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<(String, EventInvokeConfig)>>;

    /// `false` if there was none.
    async fn delete_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool>;

    /// Stores a dead letter; `false` (and nothing changed) if its request id is already there.
    async fn put_dead_letter(&self, letter: &DeadLetter) -> Result<bool>;

    async fn get_dead_letter(&self, request_id: &RequestId) -> Result<Option<DeadLetter>>;

    /// Letters matching `filter`, oldest first (by `dead_lettered_at`, then request id),
    /// strictly after `after`, at most `limit`.
    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;

    /// Marks a letter redriven if it is not yet; `false` if it is missing or already marked.
    async fn mark_redriven(&self, request_id: &RequestId, mark: &RedriveMark) -> Result<bool>;

    /// Takes back a mark set by [`mark_redriven`](Self::mark_redriven) whose re-queue failed;
    /// only a mark naming `mark.request_id` is removed.
    async fn unmark_redriven(&self, request_id: &RequestId, mark: &RedriveMark) -> Result<()>;

    /// Deletes one letter; `false` if there was none.
    async fn delete_dead_letter(&self, request_id: &RequestId) -> Result<bool>;

    /// Deletes every letter matching `filter`, returning how many.
    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64>;
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or `postgres://...`,
/// and brings its schema up to date.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Err(Error::Config(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
        )))
    }
}
