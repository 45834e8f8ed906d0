//! [`CachedStore`]: keeps function configurations in memory for a short time, so the invoke
//! path does not read the database on every call.
//!
//! Writes made through this store invalidate its entry at once, so a single gateway (as in
//! `nimbus dev`) never serves a stale configuration. Writes made through another process are
//! seen within the time-to-live, like the few seconds Lambda itself takes to apply an update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::{CodeSha256, FunctionConfig, FunctionName, InvocationRecord, RequestId};
use tokio::time::Instant;

use crate::{Result, Store};

/// How long a configuration read from the database is reused by default.
pub const DEFAULT_FUNCTION_CACHE_TTL: Duration = Duration::from_secs(1);

pub struct CachedStore {
    inner: Arc<dyn Store>,
    ttl: Duration,
    functions: Mutex<HashMap<FunctionName, Cached>>,
}

struct Cached {
    function: Option<FunctionConfig>,
    fetched_at: Instant,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            functions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FunctionName, Cached>> {
        crate::sync::lock(&self.functions)
    }

    fn forget(&self, name: &FunctionName) {
        self.lock().remove(name);
    }
}

#[async_trait::async_trait]
impl Store for CachedStore {
    async fn put_code(&self, sha: &CodeSha256, zip: Bytes) -> Result<()> {
        self.inner.put_code(sha, zip).await
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
        if let Some(cached) = self.lock().get(name)
            && cached.fetched_at.elapsed() < self.ttl
        {
            return Ok(cached.function.clone());
        }
        let fetched_at = Instant::now();
        let function = self.inner.get_function(name).await?;
        let mut functions = self.lock();
        // Bound the map by dropping expired entries when it grows.
        if functions.len() >= 10_000 {
            functions.retain(|_, cached| cached.fetched_at.elapsed() < self.ttl);
        }
        functions.insert(
            name.clone(),
            Cached {
                function: function.clone(),
                fetched_at,
            },
        );
        Ok(function)
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
        deleted
    }

    async fn put_invocations(&self, records: &[InvocationRecord]) -> Result<()> {
        self.inner.put_invocations(records).await
    }

    async fn get_invocation(&self, request_id: &RequestId) -> Result<Option<InvocationRecord>> {
        self.inner.get_invocation(request_id).await
    }
}
