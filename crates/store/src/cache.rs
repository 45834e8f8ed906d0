//! [`CachedStore`]: keeps function configurations and event invoke configurations in memory
//! for a short time, so the invoke path and the queue-worker (which reads the event invoke
//! configuration for every event) do not read the database on every call.
//!
//! Writes made through this store invalidate its entries at once, so a single gateway (as in
//! `nimbus dev`) never serves a stale configuration. Writes made through another process are
//! seen within the time-to-live, like the few seconds Lambda itself takes to apply an update.
//!
//! When the database fails (or takes longer than [`STALE_REFRESH_TIMEOUT`]) to refresh an
//! expired entry, the entry is served stale and asked for again a time-to-live later, so
//! functions already seen keep running while the database is down. While one call refreshes
//! an entry, concurrent calls answer from it rather than waiting too.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{
    Alias, CodeSha256, Cursor, DeadLetter, DeadLetterFilter, EventInvokeConfig, FunctionConfig,
    FunctionName, InvocationFilter, InvocationRecord, RedriveMark, RequestId,
};
use tokio::time::Instant;

use crate::{FunctionVersions, HttpTriggers, ProvisionedConcurrency, Result, Store};

/// How long a configuration read from the database is reused by default.
pub const DEFAULT_FUNCTION_CACHE_TTL: Duration = Duration::from_secs(1);

/// Entries a cache map holds before expired ones are dropped.
const PRUNE_AT: usize = 10_000;

/// How long a refresh of an expired entry may take before the entry is served stale. A
/// database that is down may not fail at once (the pool retries connecting), so waiting for
/// its error would stall the one call that refreshes.
pub(crate) const STALE_REFRESH_TIMEOUT: Duration = Duration::from_millis(500);

pub struct CachedStore {
    inner: Arc<dyn Store>,
    ttl: Duration,
    functions: Mutex<HashMap<FunctionName, Cached<FunctionConfig>>>,
    /// Keyed by function name and qualifier.
    event_configs: Mutex<HashMap<(FunctionName, String), Cached<EventInvokeConfig>>>,
    /// Published versions, keyed by function name and version.
    versions: Mutex<HashMap<(FunctionName, String), Cached<FunctionConfig>>>,
    /// Keyed by function name and alias name.
    aliases: Mutex<HashMap<(FunctionName, String), Cached<Alias>>>,
}

/// What the database answered, `None` included, and when it was asked.
struct Cached<T> {
    value: Option<T>,
    fetched_at: Instant,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            functions: Mutex::new(HashMap::new()),
            event_configs: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            aliases: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer for `key` in `map` if fresh, else what `fetch` answers, remembered.
    /// An expired entry is served stale when `fetch` fails or is slower than
    /// [`STALE_REFRESH_TIMEOUT`].
    async fn cached<K: Hash + Eq + Clone + std::fmt::Debug, T: Clone>(
        &self,
        map: &Mutex<HashMap<K, Cached<T>>>,
        key: K,
        fetch: impl Future<Output = Result<Option<T>>>,
    ) -> Result<Option<T>> {
        let stale = match crate::sync::lock(map).get_mut(&key) {
            Some(cached) if cached.fetched_at.elapsed() < self.ttl => {
                return Ok(cached.value.clone());
            }
            Some(cached) => {
                // Fresh again for the others while this call refreshes it.
                cached.fetched_at = Instant::now();
                Some(cached.value.clone())
            }
            None => None,
        };
        let fetched_at = Instant::now();
        let value = match stale {
            None => fetch.await?,
            Some(stale) => match tokio::time::timeout(STALE_REFRESH_TIMEOUT, fetch).await {
                Ok(Ok(value)) => value,
                Ok(Err(error)) => {
                    tracing::warn!(%error, ?key, "cannot refresh a cached configuration; serving it stale");
                    return Ok(stale);
                }
                Err(_) => {
                    tracing::warn!(
                        ?key,
                        timeout = ?STALE_REFRESH_TIMEOUT,
                        "the database is slow to refresh a cached configuration; serving it stale"
                    );
                    return Ok(stale);
                }
            },
        };
        self.remember(
            &mut crate::sync::lock(map),
            key,
            Cached {
                value: value.clone(),
                fetched_at,
            },
        );
        Ok(value)
    }

    /// Forgets the versions and aliases of `name` (after a write that may change them).
    fn forget_versions(&self, name: &FunctionName) {
        crate::sync::lock(&self.versions).retain(|(cached, _), _| cached != name);
        crate::sync::lock(&self.aliases).retain(|(cached, _), _| cached != name);
    }

    fn functions(&self) -> MutexGuard<'_, HashMap<FunctionName, Cached<FunctionConfig>>> {
        crate::sync::lock(&self.functions)
    }

    fn event_configs(
        &self,
    ) -> MutexGuard<'_, HashMap<(FunctionName, String), Cached<EventInvokeConfig>>> {
        crate::sync::lock(&self.event_configs)
    }

    fn forget(&self, name: &FunctionName) {
        self.functions().remove(name);
    }

    fn forget_event_config(&self, name: &FunctionName, qualifier: &str) {
        self.event_configs()
            .remove(&(name.clone(), qualifier.to_owned()));
    }

    /// Forgets every qualifier's configuration of `name` (deleting a function deletes them).
    fn forget_event_configs(&self, name: &FunctionName) {
        self.event_configs().retain(|(cached, _), _| cached != name);
    }

    /// Stores what was fetched, first dropping expired entries if the map has grown large.
    fn remember<K: std::hash::Hash + Eq, T>(
        &self,
        map: &mut HashMap<K, Cached<T>>,
        key: K,
        cached: Cached<T>,
    ) {
        if map.len() >= PRUNE_AT {
            map.retain(|_, entry| entry.fetched_at.elapsed() < self.ttl);
        }
        map.insert(key, cached);
    }
}

#[async_trait::async_trait]
impl FunctionVersions for CachedStore {
    async fn publish_version(
        &self,
        latest: &FunctionConfig,
        description: &str,
        revision_id: &str,
    ) -> Result<FunctionConfig> {
        let published = self
            .inner
            .publish_version(latest, description, revision_id)
            .await;
        self.forget_versions(&latest.name);
        published
    }

    async fn get_function_version(
        &self,
        name: &FunctionName,
        version: &str,
    ) -> Result<Option<FunctionConfig>> {
        let key = (name.clone(), version.to_owned());
        self.cached(
            &self.versions,
            key,
            self.inner.get_function_version(name, version),
        )
        .await
    }

    async fn list_function_versions(
        &self,
        name: &FunctionName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>> {
        self.inner.list_function_versions(name, after, limit).await
    }

    async fn last_version_number(&self, name: &FunctionName) -> Result<Option<u64>> {
        self.inner.last_version_number(name).await
    }

    async fn delete_function_version(&self, name: &FunctionName, version: &str) -> Result<bool> {
        let deleted = self.inner.delete_function_version(name, version).await;
        self.forget_versions(name);
        deleted
    }

    async fn create_alias(&self, alias: &Alias) -> Result<()> {
        let created = self.inner.create_alias(alias).await;
        self.forget_versions(&alias.function_name);
        created
    }

    async fn update_alias(&self, alias: &Alias, expected_revision: &str) -> Result<()> {
        let updated = self.inner.update_alias(alias, expected_revision).await;
        self.forget_versions(&alias.function_name);
        updated
    }

    async fn get_alias(&self, function: &FunctionName, name: &str) -> Result<Option<Alias>> {
        let key = (function.clone(), name.to_owned());
        self.cached(&self.aliases, key, self.inner.get_alias(function, name))
            .await
    }

    async fn list_aliases(&self, function: &FunctionName) -> Result<Vec<Alias>> {
        self.inner.list_aliases(function).await
    }

    async fn delete_alias(&self, function: &FunctionName, name: &str) -> Result<bool> {
        let deleted = self.inner.delete_alias(function, name).await;
        self.forget_versions(function);
        deleted
    }

    async fn get_tags(&self, name: &FunctionName) -> Result<Option<BTreeMap<String, String>>> {
        self.inner.get_tags(name).await
    }

    async fn put_tags(&self, name: &FunctionName, tags: &BTreeMap<String, String>) -> Result<bool> {
        self.inner.put_tags(name, tags).await
    }
}

/// Not cached: the gateway reads it on its control API only, the provisioner needs it fresh.
#[async_trait::async_trait]
impl ProvisionedConcurrency for CachedStore {
    async fn put_provisioned_concurrency(
        &self,
        config: &nimbus_core::ProvisionedConcurrencyConfig,
    ) -> Result<()> {
        self.inner.put_provisioned_concurrency(config).await
    }

    async fn get_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<nimbus_core::ProvisionedConcurrencyConfig>> {
        self.inner
            .get_provisioned_concurrency(name, qualifier)
            .await
    }

    async fn list_provisioned_concurrency(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
        self.inner.list_provisioned_concurrency(name).await
    }

    async fn list_all_provisioned_concurrency(
        &self,
    ) -> Result<Vec<nimbus_core::ProvisionedConcurrencyConfig>> {
        self.inner.list_all_provisioned_concurrency().await
    }

    async fn delete_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool> {
        self.inner
            .delete_provisioned_concurrency(name, qualifier)
            .await
    }

    async fn set_provisioned_allocation(
        &self,
        name: &FunctionName,
        qualifier: &str,
        allocated: u32,
        status: nimbus_core::ProvisionedStatus,
        reason: Option<&str>,
    ) -> Result<bool> {
        self.inner
            .set_provisioned_allocation(name, qualifier, allocated, status, reason)
            .await
    }
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn put_code(&self, sha: &CodeSha256, zip: Bytes) -> Result<()> {
        self.inner.put_code(sha, zip).await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }

    async fn get_code(&self, sha: &CodeSha256) -> Result<Option<Bytes>> {
        self.inner.get_code(sha).await
    }

    async fn create_function(&self, function: &FunctionConfig) -> Result<()> {
        let created = self.inner.create_function(function).await;
        self.forget(&function.name);
        created
    }

    async fn get_function(&self, name: &FunctionName) -> Result<Option<FunctionConfig>> {
        self.cached(&self.functions, name.clone(), self.inner.get_function(name))
            .await
    }

    async fn list_functions(
        &self,
        after: Option<&FunctionName>,
        limit: usize,
    ) -> Result<Vec<FunctionConfig>> {
        self.inner.list_functions(after, limit).await
    }

    async fn update_function(
        &self,
        function: &FunctionConfig,
        expected_revision: &str,
    ) -> Result<()> {
        let updated = self
            .inner
            .update_function(function, expected_revision)
            .await;
        self.forget(&function.name);
        updated
    }

    async fn delete_function(&self, name: &FunctionName) -> Result<bool> {
        let deleted = self.inner.delete_function(name).await;
        self.forget(name);
        self.forget_event_configs(name);
        self.forget_versions(name);
        deleted
    }

    async fn put_invocations(&self, records: &[InvocationRecord]) -> Result<()> {
        self.inner.put_invocations(records).await
    }

    async fn get_invocation(&self, request_id: &RequestId) -> Result<Option<InvocationRecord>> {
        self.inner.get_invocation(request_id).await
    }

    async fn list_invocations(
        &self,
        filter: &InvocationFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        self.inner.list_invocations(filter, after, limit).await
    }

    async fn put_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> Result<()> {
        let stored = self
            .inner
            .put_event_invoke_config(name, qualifier, config)
            .await;
        self.forget_event_config(name, qualifier);
        stored
    }

    async fn get_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>> {
        let key = (name.clone(), qualifier.to_owned());
        self.cached(
            &self.event_configs,
            key,
            self.inner.get_event_invoke_config(name, qualifier),
        )
        .await
    }

    async fn list_event_invoke_configs(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<(String, EventInvokeConfig)>> {
        self.inner.list_event_invoke_configs(name).await
    }

    async fn delete_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool> {
        let deleted = self.inner.delete_event_invoke_config(name, qualifier).await;
        self.forget_event_config(name, qualifier);
        deleted
    }

    async fn put_dead_letter(&self, letter: &DeadLetter) -> Result<bool> {
        self.inner.put_dead_letter(letter).await
    }

    async fn get_dead_letter(&self, request_id: &RequestId) -> Result<Option<DeadLetter>> {
        self.inner.get_dead_letter(request_id).await
    }

    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.inner.list_dead_letters(filter, after, limit).await
    }

    async fn mark_redriven(&self, request_id: &RequestId, mark: &RedriveMark) -> Result<bool> {
        self.inner.mark_redriven(request_id, mark).await
    }

    async fn unmark_redriven(&self, request_id: &RequestId, mark: &RedriveMark) -> Result<()> {
        self.inner.unmark_redriven(request_id, mark).await
    }

    async fn delete_dead_letter(&self, request_id: &RequestId) -> Result<bool> {
        self.inner.delete_dead_letter(request_id).await
    }

    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64> {
        self.inner.purge_dead_letters(filter).await
    }
}

/// Not cached: the gateway keeps its own compiled route table and URL lookups
/// (`nimbus_gateway`'s trigger cache), refreshed on the same TTL.
#[async_trait::async_trait]
impl HttpTriggers for CachedStore {
    async fn create_function_url(&self, config: &nimbus_core::FunctionUrlConfig) -> Result<()> {
        self.inner.create_function_url(config).await
    }

    async fn update_function_url(&self, config: &nimbus_core::FunctionUrlConfig) -> Result<bool> {
        self.inner.update_function_url(config).await
    }

    async fn get_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<Option<nimbus_core::FunctionUrlConfig>> {
        self.inner.get_function_url(name, qualifier).await
    }

    async fn get_function_url_by_id(
        &self,
        url_id: &str,
    ) -> Result<Option<nimbus_core::FunctionUrlConfig>> {
        self.inner.get_function_url_by_id(url_id).await
    }

    async fn list_function_urls(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<nimbus_core::FunctionUrlConfig>> {
        self.inner.list_function_urls(name).await
    }

    async fn delete_function_url(
        &self,
        name: &FunctionName,
        qualifier: Option<&str>,
    ) -> Result<bool> {
        self.inner.delete_function_url(name, qualifier).await
    }

    async fn create_route(&self, route: &nimbus_core::HttpRoute) -> Result<()> {
        self.inner.create_route(route).await
    }

    async fn get_route(&self, route_id: &str) -> Result<Option<nimbus_core::HttpRoute>> {
        self.inner.get_route(route_id).await
    }

    async fn list_routes(&self) -> Result<Vec<nimbus_core::HttpRoute>> {
        self.inner.list_routes().await
    }

    async fn delete_route(&self, route_id: &str) -> Result<bool> {
        self.inner.delete_route(route_id).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nimbus_core::Runtime;
    use nimbus_core::function::LATEST;
    use sqlx::sqlite::SqlitePool;
    use time::OffsetDateTime;

    use super::*;

    fn function(name: &str, code: &CodeSha256) -> FunctionConfig {
        FunctionConfig {
            name: FunctionName::parse(name).unwrap(),
            runtime: "python3.12".parse::<Runtime>().unwrap(),
            handler: Some("app.handler".to_owned()),
            role: "arn:aws:iam::000000000000:role/nimbus".to_owned(),
            description: String::new(),
            timeout_secs: 3,
            memory_mb: 128,
            environment: BTreeMap::new(),
            reserved_concurrency: None,
            code_sha256: *code,
            code_size: 3,
            version: LATEST.to_owned(),
            revision_id: uuid::Uuid::new_v4().to_string(),
            last_modified: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// A real SQLite store that the test can break (its functions table renamed away) and
    /// mend; entries expire at once, so every read past the first is a refresh.
    struct Fixture {
        cached: CachedStore,
        raw: SqlitePool,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("nimbus.db").display());
            let store = crate::connect(&url).await.unwrap();
            let raw = SqlitePool::connect(&url).await.unwrap();
            Self {
                cached: CachedStore::new(store, Duration::ZERO),
                raw,
                _dir: dir,
            }
        }

        async fn sql(&self, statement: &str) {
            sqlx::query(statement).execute(&self.raw).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_function_already_seen_is_served_stale_while_the_database_fails() {
        let f = Fixture::new().await;
        let zip = Bytes::from_static(b"zip");
        let sha = CodeSha256::of(&zip);
        f.cached.put_code(&sha, zip).await.unwrap();
        let seen = function("seen", &sha);
        f.cached.create_function(&seen).await.unwrap();
        let name = seen.name.clone();
        assert_eq!(
            f.cached.get_function(&name).await.unwrap(),
            Some(seen.clone())
        );

        f.sql("ALTER TABLE functions RENAME TO functions_away")
            .await;
        assert_eq!(
            f.cached.get_function(&name).await.unwrap(),
            Some(seen.clone())
        );
        // A function never seen has nothing to fall back on.
        let unseen = FunctionName::parse("unseen").unwrap();
        assert!(f.cached.get_function(&unseen).await.is_err());

        // Mended: the database answers again, changes included.
        f.sql("ALTER TABLE functions_away RENAME TO functions")
            .await;
        f.sql("UPDATE functions SET description = 'changed'").await;
        let fresh = f.cached.get_function(&name).await.unwrap().unwrap();
        assert_eq!(fresh.description, "changed");
    }
}
