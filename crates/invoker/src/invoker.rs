//! [`LocalInvoker`]: runs invocations on this node's instances.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nimbus_core::invocation::error_document;
use nimbus_core::{
    Error, FunctionConfig, FunctionError, InvokeOutcome, InvokeRequest, Result, Runtime,
};
use nimbus_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::code::CodeCache;
use crate::config::InvokerConfig;
use crate::instance::{Instance, Ran, StartError};
use crate::isolation::Isolation;
use crate::pool::{Acquired, InstancePool, PoolKey, PoolStats};
use crate::run_to_end::RunToEnd;
use crate::{provisioner, runtimes, scratch};

/// The account id in the ARNs functions see (`Lambda-Runtime-Invoked-Function-Arn`).
const ACCOUNT_ID: &str = "000000000000";
/// The reaper never wakes more often than this, however short the idle timeout.
const MIN_REAP_PERIOD: Duration = Duration::from_millis(50);

/// Runs functions on this host, as Lambda's execution environment does. Cheap to share: the
/// work happens in tasks that hold its [`Node`].
pub struct LocalInvoker {
    node: Arc<Node>,
    reaper: CancellationToken,
}

/// This node's execution environment: code on disk, the instance pool, counters.
pub(crate) struct Node {
    pub(crate) config: InvokerConfig,
    isolation: Isolation,
    code: CodeCache,
    pub(crate) pool: InstancePool,
    instances_started: AtomicU64,
}

/// What the invoker is doing, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokerStats {
    /// Instances started since the invoker started: cold starts, and instances started
    /// ahead of traffic for provisioned concurrency.
    pub instances_started: u64,
    /// Idle instances waiting for an invocation.
    pub warm: usize,
    /// Instances running (or starting for) an invocation.
    pub busy: usize,
}

impl LocalInvoker {
    /// Installs the runtime bootstraps under `data_dir`, clears what a previous run left
    /// there, and starts the idle-instance reaper and the provisioner, which keeps the
    /// instances provisioned concurrency asks for. One invoker per `data_dir`.
    pub async fn start(config: InvokerConfig, store: Arc<dyn Store>) -> Result<Arc<LocalInvoker>> {
        runtimes::install(&config)
            .map_err(|e| Error::Service(format!("cannot install the runtimes: {e}")))?;
        let provisioned = store.clone();
        let prepared = config.clone();
        let (isolation, code) = tokio::task::spawn_blocking(move || {
            let isolation = Isolation::prepare(&prepared).map_err(Error::Service)?;
            let data_dir = &prepared.data_dir;
            // Folders of instances that died with a previous invoker.
            scratch::remove_leftovers(&data_dir.join("instances"), "");
            Ok::<_, Error>((isolation, CodeCache::open(data_dir.join("code"), store)))
        })
        .await
        .map_err(|e| Error::Service(format!("cannot open the code cache: {e}")))??;
        let node = Arc::new(Node {
            isolation,
            code,
            pool: InstancePool::new(config.max_instances as usize),
            instances_started: AtomicU64::new(0),
            config,
        });
        let reaper = CancellationToken::new();
        tokio::spawn(reap_idle(Arc::downgrade(&node), reaper.clone()));
        tokio::spawn(provisioner::run(
            Arc::downgrade(&node),
            provisioned,
            reaper.clone(),
        ));
        Ok(Arc::new(LocalInvoker { node, reaper }))
    }

    /// Stops taking invocations and stops every instance, idle or running (a running
    /// invocation then ends with `Runtime.ExitError`), killing their process groups and
    /// waiting until each is reaped. The servers in front should drain first.
    pub async fn shutdown(&self) {
        self.reaper.cancel();
        stop_all(self.node.pool.close()).await;
    }

    pub fn stats(&self) -> InvokerStats {
        let PoolStats { idle, busy, .. } = self.node.pool.stats();
        InvokerStats {
            instances_started: self.node.instances_started.load(Ordering::Relaxed),
            warm: idle,
            busy,
        }
    }
}

impl Drop for LocalInvoker {
    fn drop(&mut self) {
        self.reaper.cancel();
    }
}

#[async_trait::async_trait]
impl nimbus_core::Invoker for LocalInvoker {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome> {
        let node = self.node.clone();
        let span = tracing::info_span!(
            "run",
            request_id = %request.request_id,
            function = %request.function.name,
            trace_id = tracing::field::Empty,
        );
        // The function's output is logged in this span, on its own: it names the trace.
        nimbus_telemetry::trace::record_trace_id(&span);
        RunToEnd::new(async move { node.invoke(request).await }.instrument(span)).await
    }
}

impl Node {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome> {
        let first = self.run(&request).await?;
        if !first.untouched {
            return Ok(first.outcome);
        }
        // A warm instance died between invocations (crashed in the background, killed by
        // the OOM killer); as Lambda does, the invocation gets a fresh one.
        tracing::debug!(request_id = %request.request_id, "warm instance was gone; retrying");
        Ok(self.run(&request).await?.outcome)
    }

    /// Runs `request` on a warm instance or a new one.
    async fn run(&self, request: &InvokeRequest) -> Result<Ran> {
        let function = &request.function;
        let key = PoolKey::of(function);
        let limit = function
            .reserved_concurrency
            .unwrap_or(self.config.default_function_concurrency);
        let Acquired { mut lease, evicted } = self.pool.acquire(&key, limit)?;
        if let Some(evicted) = evicted {
            evicted.stop().await;
        }
        let instance = match lease.instance() {
            Some(warm) => warm,
            None => match self.start_instance(request).await? {
                Ok(instance) => lease.attach(instance)?,
                // Dropping the lease gives its room back.
                Err(refused) => {
                    return Ok(Ran {
                        outcome: refused,
                        reusable: false,
                        untouched: false,
                    });
                }
            },
        };
        let arn = function.arn(&self.config.region, ACCOUNT_ID);
        let ran = instance.invoke(request, arn).await;
        metrics::histogram!("nimbus_function_duration_seconds", "function" => function.name.as_str().to_owned())
            .record(ran.outcome.duration.as_secs_f64());
        drop(instance);
        if let Some(retired) = lease.finish(ran.reusable) {
            retired.stop().await;
        }
        Ok(ran)
    }

    /// Starts an instance for `request`, or the outcome Lambda gives when the function's
    /// entry point cannot run.
    async fn start_instance(
        &self,
        request: &InvokeRequest,
    ) -> Result<std::result::Result<Instance, InvokeOutcome>> {
        let function = &request.function;
        let code_dir = self.code.unpacked(&function.code_sha256).await?;
        if matches!(function.runtime, Runtime::Provided(_)) {
            let bootstrap = code_dir.join("bootstrap");
            if !is_executable(&bootstrap).await {
                let message = format!(
                    "RequestId: {} Error: Couldn't find valid bootstrap(s): [{}]",
                    request.request_id,
                    bootstrap.display()
                );
                return Ok(Err(invalid_entrypoint(request, &message)));
            }
        }
        match Instance::spawn(&self.config, &self.isolation, function, &code_dir).await {
            Ok(instance) => {
                self.instances_started.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("nimbus_cold_starts_total", "function" => function.name.as_str().to_owned())
                    .increment(1);
                Ok(Ok(instance))
            }
            Err(StartError::Setup(error)) => Err(error),
            // The function's own executable cannot run: its fault, as Lambda reports it.
            Err(StartError::Exec { program, error })
                if matches!(function.runtime, Runtime::Provided(_)) =>
            {
                let message = format!(
                    "RequestId: {} Error: fork/exec {}: {error}",
                    request.request_id,
                    program.display()
                );
                Ok(Err(invalid_entrypoint(request, &message)))
            }
            // The host's interpreter cannot run: ours.
            Err(StartError::Exec { program, error }) => Err(Error::Service(format!(
                "cannot run {} for {}: {error}",
                program.display(),
                function.runtime
            ))),
        }
    }
}

impl Node {
    /// Starts an instance of `function` ahead of traffic and waits until its runtime has
    /// initialised, then leaves it idle in the pool: its first invocation is warm. The
    /// reason when it cannot start.
    pub(crate) async fn start_provisioned(
        &self,
        function: &FunctionConfig,
    ) -> std::result::Result<(), String> {
        if let Some(evicted) = self.pool.reserve().map_err(|e| e.to_string())? {
            evicted.stop().await;
        }
        match self.initialised_instance(function).await {
            Ok(instance) => {
                if let Some(refused) = self.pool.add_idle(&PoolKey::of(function), instance) {
                    refused.stop().await;
                }
                tracing::debug!(function = %function.name, version = %function.version, "provisioned instance ready");
                Ok(())
            }
            Err(reason) => {
                self.pool.release();
                Err(reason)
            }
        }
    }

    async fn initialised_instance(
        &self,
        function: &FunctionConfig,
    ) -> std::result::Result<Arc<Instance>, String> {
        let code_dir = self
            .code
            .unpacked(&function.code_sha256)
            .await
            .map_err(|e| e.to_string())?;
        let instance =
            match Instance::spawn(&self.config, &self.isolation, function, &code_dir).await {
                Ok(instance) => instance,
                Err(StartError::Setup(error)) => return Err(error.to_string()),
                Err(StartError::Exec { program, error }) => {
                    return Err(format!("cannot run {}: {error}", program.display()));
                }
            };
        self.instances_started.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("nimbus_provisioned_starts_total", "function" => function.name.as_str().to_owned())
            .increment(1);
        if let Err(reason) = instance.initialise().await {
            instance.stop().await;
            return Err(reason);
        }
        Ok(Arc::new(instance))
    }
}

fn invalid_entrypoint(request: &InvokeRequest, message: &str) -> InvokeOutcome {
    let error_type = "Runtime.InvalidEntrypoint";
    let log = format!(
        "START RequestId: {id} Version: {version}\n{message}\nEND RequestId: {id}\n",
        id = request.request_id,
        version = request.function.version,
    );
    InvokeOutcome {
        payload: error_document(error_type, message),
        function_error: Some(FunctionError::Unhandled),
        error_type: Some(error_type.to_owned()),
        executed_version: request.function.version.clone(),
        duration: Duration::ZERO,
        init_duration: None,
        max_memory_used_mb: 0,
        log_tail: request.want_log_tail.then(|| crate::logs::tail(&log)),
    }
}

/// Stops instances idle for longer than the idle timeout, on tokio's clock.
async fn reap_idle(node: Weak<Node>, stop: CancellationToken) {
    loop {
        let Some(period) = node
            .upgrade()
            .map(|node| (node.config.idle_timeout / 4).max(MIN_REAP_PERIOD))
        else {
            return;
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        let Some(node) = node.upgrade() else {
            return;
        };
        let reaped = node.pool.reap(node.config.idle_timeout);
        if !reaped.is_empty() {
            tracing::debug!(count = reaped.len(), "stopping idle instances");
            stop_all(reaped).await;
        }
    }
}

async fn stop_all(instances: Vec<Arc<Instance>>) {
    futures::future::join_all(instances.iter().map(|instance| instance.stop())).await;
}

async fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    tokio::fs::metadata(path)
        .await
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
