//! [`LocalInvoker`]: runs invocations on this node's instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_core::invocation::error_document;
use nimbus_core::{Error, FunctionError, InvokeOutcome, InvokeRequest, Result, Runtime};
use nimbus_store::Store;
use tokio_util::sync::CancellationToken;

use crate::code::CodeCache;
use crate::config::InvokerConfig;
use crate::instance::Instance;
use crate::pool::{InstancePool, Lease, PoolKey, PoolStats};
use crate::runtimes;

pub struct LocalInvoker {
    config: InvokerConfig,
    code: CodeCache,
    pool: InstancePool,
    instances_started: AtomicU64,
    reaper: CancellationToken,
}

/// What the invoker is doing, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokerStats {
    /// Instances started since the invoker started (each a cold start).
    pub instances_started: u64,
    pub warm: usize,
    pub busy: usize,
}

impl LocalInvoker {
    /// Installs the runtime bootstraps and starts the idle-instance reaper.
    pub async fn start(config: InvokerConfig, store: Arc<dyn Store>) -> Result<Arc<LocalInvoker>> {
        runtimes::install(&config)
            .map_err(|e| Error::Service(format!("cannot install the runtimes: {e}")))?;
        let invoker = Arc::new(LocalInvoker {
            code: CodeCache::new(config.data_dir.join("code"), store),
            pool: InstancePool::new(config.max_instances as usize),
            instances_started: AtomicU64::new(0),
            reaper: CancellationToken::new(),
            config,
        });
        tokio::spawn(reap_idle(Arc::downgrade(&invoker), invoker.reaper.clone()));
        Ok(invoker)
    }

    /// Stops taking invocations and stops every idle instance. Call it once in-flight
    /// invocations are done (the servers in front drain first).
    pub async fn shutdown(&self) {
        self.reaper.cancel();
        stop_all(self.pool.close()).await;
    }

    pub fn stats(&self) -> InvokerStats {
        let PoolStats { idle, busy, .. } = self.pool.stats();
        InvokerStats {
            instances_started: self.instances_started.load(Ordering::Relaxed),
            warm: idle,
            busy,
        }
    }

    async fn start_instance(
        &self,
        request: &InvokeRequest,
    ) -> Result<std::result::Result<Instance, InvokeOutcome>> {
        let function = &request.function;
        let code_dir = self.code.unpacked(&function.code_sha256).await?;
        if matches!(function.runtime, Runtime::Provided(_))
            && !is_executable(&code_dir.join("bootstrap"))
        {
            let message = format!(
                "RequestId: {} Error: Couldn't find valid bootstrap(s): [{}]",
                request.request_id,
                code_dir.join("bootstrap").display()
            );
            return Ok(Err(InvokeOutcome {
                payload: error_document("Runtime.InvalidEntrypoint", &message),
                function_error: Some(FunctionError::Unhandled),
                error_type: Some("Runtime.InvalidEntrypoint".to_owned()),
                executed_version: function.version.clone(),
                duration: std::time::Duration::ZERO,
                init_duration: None,
                max_memory_used_mb: 0,
                log_tail: request.want_log_tail.then(String::new),
            }));
        }
        let instance = Instance::spawn(&self.config, function, &code_dir).await?;
        self.instances_started.fetch_add(1, Ordering::Relaxed);
        Ok(Ok(instance))
    }
}

#[async_trait::async_trait]
impl nimbus_core::Invoker for LocalInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome> {
        let function = &request.function;
        let key = PoolKey::of(function);
        let limit = function
            .reserved_concurrency
            .unwrap_or(self.config.default_function_concurrency);
        let (lease, evicted) = self.pool.acquire(&key, limit)?;
        if let Some(evicted) = evicted {
            tokio::spawn(async move { evicted.stop().await });
        }
        let instance = match lease {
            Lease::Warm(instance) => instance,
            Lease::Cold => match self.start_instance(&request).await {
                Ok(Ok(instance)) => Arc::new(instance),
                Ok(Err(outcome)) => {
                    self.pool.abandon(&key);
                    return Ok(outcome);
                }
                Err(error) => {
                    self.pool.abandon(&key);
                    return Err(error);
                }
            },
        };
        let arn = function.arn(&self.config.region, "000000000000");
        let ran = instance.invoke(&request, arn).await;
        if let Some(retired) = self.pool.release(&key, instance, ran.reusable) {
            retired.stop().await;
        }
        Ok(ran.outcome)
    }
}

async fn reap_idle(invoker: std::sync::Weak<LocalInvoker>, stop: CancellationToken) {
    loop {
        let Some(period) = invoker
            .upgrade()
            .map(|i| (i.config.idle_timeout / 4).max(std::time::Duration::from_millis(50)))
        else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(invoker) = invoker.upgrade() else {
            return;
        };
        let reaped = invoker.pool.reap(invoker.config.idle_timeout);
        if !reaped.is_empty() {
            tracing::debug!(count = reaped.len(), "stopping idle instances");
            stop_all(reaped).await;
        }
    }
}

async fn stop_all(instances: Vec<Arc<Instance>>) {
    futures::future::join_all(instances.iter().map(|instance| instance.stop())).await;
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
