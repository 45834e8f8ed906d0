//! [`WorkerConfig`]: how many events a worker runs at once and how it retries them.

use std::time::Duration;

use nimbus_core::{RequestId, RetryPolicy};

use crate::CallbackNetworks;

pub const DEFAULT_MAX_INFLIGHT: usize = 64;
pub const DEFAULT_CLAIM_WAIT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CALLBACK_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's consumer name in the queue; unique per process.
    pub consumer: String,
    /// Events run at once at most.
    pub max_inflight: usize,
    pub retry: RetryPolicy,
    /// How long one claim waits for events before the worker looks at shutdown again.
    pub claim_wait: Duration,
    /// How often the claim of a running event is extended; keep it well under the queue's
    /// visibility timeout (a third of it).
    pub heartbeat_interval: Duration,
    /// How long shutdown waits for running events before leaving them to be redelivered.
    pub drain_timeout: Duration,
    /// POSTs of an invocation record to a callback URL, the first included; the waits
    /// between them follow the retry policy's system back-off.
    pub callback_attempts: u32,
    /// Which addresses callback URLs may reach.
    pub callback_networks: CallbackNetworks,
    /// Region and account shown in the function ARNs of invocation records.
    pub region: String,
    pub account_id: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            consumer: format!("worker-{}-{}", std::process::id(), RequestId::new()),
            max_inflight: DEFAULT_MAX_INFLIGHT,
            retry: RetryPolicy::default(),
            claim_wait: DEFAULT_CLAIM_WAIT,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            callback_attempts: DEFAULT_CALLBACK_ATTEMPTS,
            callback_networks: CallbackNetworks::default(),
            region: "us-east-1".to_owned(),
            account_id: "000000000000".to_owned(),
        }
    }
}
