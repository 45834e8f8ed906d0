//! What every handler shares: the store, the invoker, the event queue, the DLQ service, the
//! invocation record writer, the gateway's configuration and its cache of HTTP triggers.

use std::sync::Arc;

use nimbus_core::sigv4::Credentials;
use nimbus_core::{DeadLetters, FunctionName, Invoker, limits};
use nimbus_queue::EventQueue;
use nimbus_store::{RecordWriter, Store};

use crate::backlog::BacklogBound;
use crate::http_trigger::TriggerCache;

/// Where HTTP routes are served on the gateway's port unless configured otherwise.
pub const DEFAULT_ROUTES_PREFIX: &str = "/api";

/// The gateway's settings, validated by the binary that builds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Largest synchronous invoke payload; larger requests get `413` unread.
    pub max_sync_payload_bytes: usize,
    /// Largest asynchronous (`Event`) invoke payload; larger requests get `413` unread.
    pub max_async_payload_bytes: usize,
    /// Region shown in ARNs.
    pub region: String,
    /// Account id shown in ARNs and in the default role.
    pub account_id: String,
    /// The account's concurrency (`GetAccountSettings`); reserved concurrency must leave
    /// [`MIN_UNRESERVED_CONCURRENCY`](crate::concurrency::MIN_UNRESERVED_CONCURRENCY) of it.
    pub account_concurrency: u32,
    /// The keys requests must be signed with (AWS Signature Version 4); with none, requests
    /// are not authenticated.
    pub credentials: Vec<Credentials>,
    /// Where HTTP routes are served on the gateway's port (`/api` serves `GET /orders` at
    /// `/api/orders`); `None` serves them only on a listener of their own.
    pub routes_prefix: Option<String>,
    /// The address callers reach the gateway at (`https://fn.example.com`), used in the
    /// `FunctionUrl` of function URLs; without it, the `Host` of the request that asks.
    pub public_url: Option<String>,
    /// Events the queue may hold (ready, delayed and in flight) before `Event` invokes are
    /// refused with `429`; `None`: no bound. See [`crate::backlog`] for how it is counted.
    pub max_queue_backlog: Option<u64>,
}

/// The default bound on the event queue's backlog.
pub const DEFAULT_MAX_QUEUE_BACKLOG: u64 = 100_000;

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_sync_payload_bytes: limits::MAX_SYNC_PAYLOAD_BYTES,
            max_async_payload_bytes: limits::MAX_ASYNC_PAYLOAD_BYTES,
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
            account_concurrency: 1000,
            credentials: Vec::new(),
            routes_prefix: Some(DEFAULT_ROUTES_PREFIX.to_owned()),
            public_url: None,
            max_queue_backlog: Some(DEFAULT_MAX_QUEUE_BACKLOG),
        }
    }
}

impl GatewayConfig {
    pub(crate) fn function_arn(&self, name: &FunctionName) -> String {
        nimbus_core::function::function_arn(&self.region, &self.account_id, name)
    }

    /// The ARN of one version of a function: `arn:...:function:NAME:QUALIFIER`.
    pub(crate) fn qualified_arn(&self, name: &FunctionName, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(name))
    }

    /// The role a function gets when `CreateFunction` names none (Nimbus does not use roles).
    pub(crate) fn default_role(&self) -> String {
        format!("arn:aws:iam::{}:role/nimbus", self.account_id)
    }
}

/// The gateway's shared state; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    invoker: Arc<dyn Invoker>,
    queue: Arc<dyn EventQueue>,
    dead_letters: Arc<dyn DeadLetters>,
    records: RecordWriter,
    /// `None` when the backlog is not bounded.
    backlog: Option<BacklogBound>,
    config: GatewayConfig,
    triggers: TriggerCache,
}

impl AppState {
    /// `queue` takes the `Event` invocations the gateway accepts; `dead_letters` is the DLQ
    /// service (in-process or its gRPC client) that `/nimbus/v1/dead-letters` fronts.
    pub fn new(
        store: Arc<dyn Store>,
        invoker: Arc<dyn Invoker>,
        queue: Arc<dyn EventQueue>,
        dead_letters: Arc<dyn DeadLetters>,
        records: RecordWriter,
        config: GatewayConfig,
    ) -> Self {
        let backlog = config
            .max_queue_backlog
            .map(|limit| BacklogBound::new(limit, queue.clone()));
        Self {
            inner: Arc::new(Shared {
                store,
                invoker,
                queue,
                backlog,
                dead_letters,
                records,
                config,
                triggers: TriggerCache::new(nimbus_store::DEFAULT_FUNCTION_CACHE_TTL),
            }),
        }
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn invoker(&self) -> &dyn Invoker {
        self.inner.invoker.as_ref()
    }

    pub(crate) fn queue(&self) -> &dyn EventQueue {
        self.inner.queue.as_ref()
    }

    pub(crate) fn dead_letters(&self) -> &dyn DeadLetters {
        self.inner.dead_letters.as_ref()
    }

    pub(crate) fn records(&self) -> &RecordWriter {
        &self.inner.records
    }

    pub(crate) fn backlog(&self) -> Option<&BacklogBound> {
        self.inner.backlog.as_ref()
    }

    pub(crate) fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    pub(crate) fn triggers(&self) -> &TriggerCache {
        &self.inner.triggers
    }
}
