//! What the trigger path reads on every request, kept in memory: the compiled route table and
//! the function URLs by id. Entries live for a TTL (the store's function cache TTL), so a
//! change made through another gateway is served within it; a change made through this one
//! is served at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nimbus_core::{FunctionUrlConfig, RouteTable};
use nimbus_store::Store;

/// URL entries kept before expired ones are dropped.
const PRUNE_AT: usize = 10_000;

/// What the store answered for a URL id, `None` included, and when.
type CachedUrl = (Instant, Option<Arc<FunctionUrlConfig>>);

pub(crate) struct TriggerCache {
    ttl: Duration,
    routes: Mutex<Option<(Instant, Arc<RouteTable>)>>,
    urls: Mutex<HashMap<String, CachedUrl>>,
}

impl TriggerCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            routes: Mutex::new(None),
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// The route table, rebuilt from the store when older than the TTL.
    pub(crate) async fn routes(&self, store: &dyn Store) -> nimbus_store::Result<Arc<RouteTable>> {
        if let Some((fetched_at, table)) = lock(&self.routes).as_ref()
            && fetched_at.elapsed() < self.ttl
        {
            return Ok(Arc::clone(table));
        }
        let fetched_at = Instant::now();
        let table = Arc::new(RouteTable::new(store.list_routes().await?));
        *lock(&self.routes) = Some((fetched_at, Arc::clone(&table)));
        Ok(table)
    }

    /// After a route was added or removed here.
    pub(crate) fn forget_routes(&self) {
        *lock(&self.routes) = None;
    }

    pub(crate) async fn url(
        &self,
        store: &dyn Store,
        url_id: &str,
    ) -> nimbus_store::Result<Option<Arc<FunctionUrlConfig>>> {
        if let Some((fetched_at, config)) = lock(&self.urls).get(url_id)
            && fetched_at.elapsed() < self.ttl
        {
            return Ok(config.clone());
        }
        let fetched_at = Instant::now();
        let config = store.get_function_url_by_id(url_id).await?.map(Arc::new);
        let mut urls = lock(&self.urls);
        if urls.len() >= PRUNE_AT {
            urls.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        urls.insert(url_id.to_owned(), (fetched_at, config.clone()));
        Ok(config)
    }

    /// After a function URL was changed or removed here.
    pub(crate) fn forget_urls(&self) {
        lock(&self.urls).clear();
    }
}

/// The maps hold plain data that a panic cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
