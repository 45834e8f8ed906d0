//! One instance: a function's runtime process, in its own process group, with its own Runtime
//! API server, scratch folder and captured output. It runs one invocation at a time and is
//! retired (its whole process group killed and reaped) after a timeout, a crash or an init
//! failure.

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::invocation::error_document;
use nimbus_core::{
    FunctionConfig, FunctionError, InvokeOutcome, InvokeRequest, RequestId, Runtime,
};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::config::{INIT_TIMEOUT, InvokerConfig};
use crate::logs::{InstanceLogs, Stream};
use crate::runtime_api::{Event, Reply, RuntimeApi};
use crate::runtimes;

pub(crate) struct Instance {
    pub pid: u32,
    function_name: String,
    memory_mb: u32,
    api: RuntimeApi,
    logs: InstanceLogs,
    streams: tokio::sync::Mutex<Vec<Stream>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    spawned_at: Instant,
    /// Set once the first invocation has been taken (init is over).
    initialised: std::sync::atomic::AtomicBool,
    _scratch: tempfile::TempDir,
}

/// How an invocation on an instance ended, and whether the instance may serve again.
pub(crate) struct Ran {
    pub outcome: InvokeOutcome,
    pub reusable: bool,
}

impl Instance {
    /// Starts the runtime process; it initialises while the first invocation waits for it.
    pub(crate) async fn spawn(
        config: &InvokerConfig,
        function: &FunctionConfig,
        code_dir: &Path,
    ) -> nimbus_core::Result<Instance> {
        let service = |what: &str, e: std::io::Error| {
            nimbus_core::Error::Service(format!(
                "cannot start an instance of {}: {what}: {e}",
                function.name
            ))
        };
        let api = RuntimeApi::start()
            .await
            .map_err(|e| service("runtime API", e))?;
        let scratch_root = config.data_dir.join("instances");
        std::fs::create_dir_all(&scratch_root).map_err(|e| service("scratch folder", e))?;
        let scratch = tempfile::Builder::new()
            .prefix(function.name.as_str())
            .tempdir_in(&scratch_root)
            .map_err(|e| service("scratch folder", e))?;

        let mut command = runtimes::command(config, function, code_dir);
        command
            .env_clear()
            .envs(&function.environment)
            .envs(lambda_environment(
                config,
                function,
                code_dir,
                &api,
                scratch.path(),
            ))
            .current_dir(code_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| service("spawn", e))?;
        let pid = child.id().unwrap_or_default();

        let logs = InstanceLogs::new(function.name.as_str());
        let mut streams = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            streams.push(logs.capture(stdout).map_err(|e| service("stdout", e))?);
        }
        if let Some(stderr) = child.stderr.take() {
            streams.push(logs.capture(stderr).map_err(|e| service("stderr", e))?);
        }
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await;
            // Whatever the runtime left behind in its group goes with it.
            kill_group(pid);
            let _ = exit_tx.send(Some(status.unwrap_or_else(|_| ExitStatus::from_raw(0))));
        });
        tracing::debug!(function = %function.name, pid, "instance started");
        Ok(Instance {
            pid,
            function_name: function.name.to_string(),
            memory_mb: function.memory_mb,
            api,
            logs,
            streams: tokio::sync::Mutex::new(streams),
            exit,
            spawned_at: Instant::now(),
            initialised: std::sync::atomic::AtomicBool::new(false),
            _scratch: scratch,
        })
    }

    /// Runs one invocation to its end: a reply, a timeout, or the process' exit.
    pub(crate) async fn invoke(&self, request: &InvokeRequest, function_arn: String) -> Ran {
        use std::sync::atomic::Ordering;
        let function = &request.function;
        let id = request.request_id;
        let cold = !self.initialised.swap(true, Ordering::AcqRel);
        self.logs.begin(id, &function.version);
        let started = Instant::now();
        let timeout = Duration::from_secs(u64::from(function.timeout_secs));
        let (taken_tx, mut taken) = oneshot::channel();
        let event = Event {
            request_id: id,
            payload: request.payload.clone(),
            function_arn,
            timeout,
            trace_id: request.trace_id.clone(),
            client_context: request.client_context.clone(),
            taken: taken_tx,
        };

        let mut init_duration = None;
        let mut deadline = started + INIT_TIMEOUT.max(timeout);
        let mut exit = self.exit.clone();
        let ending = match self.api.submit(event).await {
            None => Ending::Exited(
                self.exit
                    .borrow()
                    .unwrap_or_else(|| ExitStatus::from_raw(0)),
            ),
            Some(mut reply) => loop {
                tokio::select! {
                    taken_at = &mut taken, if init_duration.is_none() => {
                        if let Ok(new_deadline) = taken_at {
                            deadline = new_deadline;
                            init_duration = Some(if cold { self.spawned_at.elapsed() } else { Duration::ZERO });
                        }
                    }
                    reply = &mut reply => break match reply {
                        Ok(reply) => Ending::Replied(reply),
                        Err(_) => Ending::Exited(self.wait_exit().await),
                    },
                    status = exited(&mut exit) => break Ending::Exited(status),
                    () = tokio::time::sleep_until(deadline) => break Ending::TimedOut,
                }
            },
        };
        // Invocation time starts when the runtime takes the event, as on Lambda.
        let duration = match init_duration {
            Some(init) if cold => started.elapsed().saturating_sub(init),
            _ => started.elapsed(),
        };

        if matches!(ending, Ending::TimedOut) {
            kill_group(self.pid);
        }
        self.logs.settle(&mut self.streams.lock().await).await;
        let (payload, function_error, error_type, reusable) =
            self.interpret(ending, id, function.timeout_secs);
        if let Some(error_type) = &error_type
            && !reusable
        {
            tracing::info!(function = %self.function_name, request_id = %id, error_type, "instance retired");
        }

        // Read from /proc only when someone will see it: it costs syscalls on the hot path.
        let max_memory_used_mb = if request.want_log_tail {
            peak_memory_mb(self.pid)
        } else {
            0
        };
        let mut report = format!(
            "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            duration.as_secs_f64() * 1000.0,
            duration.as_micros().div_ceil(1000).max(1),
            self.memory_mb,
            max_memory_used_mb,
        );
        let cold_init = init_duration.filter(|_| cold);
        if let Some(init) = cold_init {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        let log = self.logs.finish(&report);
        Ran {
            outcome: InvokeOutcome {
                payload,
                function_error,
                error_type,
                executed_version: function.version.clone(),
                duration,
                init_duration: cold_init,
                max_memory_used_mb,
                log_tail: request.want_log_tail.then(|| crate::logs::tail(&log)),
            },
            reusable,
        }
    }

    fn interpret(
        &self,
        ending: Ending,
        id: RequestId,
        timeout_secs: u32,
    ) -> (Bytes, Option<FunctionError>, Option<String>, bool) {
        let unhandled = Some(FunctionError::Unhandled);
        match ending {
            Ending::Replied(Reply::Response(body)) => (body, None, None, true),
            Ending::Replied(Reply::Error { error_type, body }) => {
                (body, unhandled, error_type, true)
            }
            Ending::Replied(Reply::InitError { error_type, body }) => {
                let error_type = error_type.unwrap_or_else(|| "Runtime.Unknown".to_owned());
                let body = if body.is_empty() {
                    error_document(
                        &error_type,
                        &format!("RequestId: {id} Error: the runtime failed to initialise"),
                    )
                } else {
                    body
                };
                (body, unhandled, Some(error_type), false)
            }
            Ending::Replied(Reply::TooLarge) => {
                let error_type = "Function.ResponseSizeTooLarge";
                let message = format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES
                );
                (
                    error_document(error_type, &message),
                    unhandled,
                    Some(error_type.to_owned()),
                    true,
                )
            }
            Ending::TimedOut => {
                let error_type = "Sandbox.Timedout";
                let message = format!(
                    "RequestId: {id} Error: Task timed out after {timeout_secs}.00 seconds"
                );
                (
                    error_document(error_type, &message),
                    unhandled,
                    Some(error_type.to_owned()),
                    false,
                )
            }
            Ending::Exited(status) => {
                let error_type = "Runtime.ExitError";
                let message = format!(
                    "RequestId: {id} Error: Runtime exited with error: {}",
                    describe_exit(status)
                );
                (
                    error_document(error_type, &message),
                    unhandled,
                    Some(error_type.to_owned()),
                    false,
                )
            }
        }
    }

    async fn wait_exit(&self) -> ExitStatus {
        let mut exit = self.exit.clone();
        let status = exit.wait_for(Option::is_some).await;
        status
            .ok()
            .and_then(|s| *s)
            .unwrap_or_else(|| ExitStatus::from_raw(0))
    }

    /// Kills the process group and waits until the process is reaped.
    pub(crate) async fn stop(&self) {
        kill_group(self.pid);
        self.wait_exit().await;
        tracing::debug!(function = %self.function_name, pid = self.pid, "instance stopped");
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

/// Waits for the process to be reaped and returns how it ended.
async fn exited(exit: &mut watch::Receiver<Option<ExitStatus>>) -> ExitStatus {
    let status = exit.wait_for(Option::is_some).await.map(|status| *status);
    // The sender lives until the status is sent, so an error cannot carry one.
    status
        .ok()
        .flatten()
        .unwrap_or_else(|| ExitStatus::from_raw(0))
}

enum Ending {
    Replied(Reply),
    TimedOut,
    Exited(ExitStatus),
}

fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal: {signal}"),
        (None, None) => "unknown".to_owned(),
    }
}

fn kill_group(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // ESRCH (already gone) is the common, harmless case.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Peak resident memory of the runtime process (`VmHWM`), in MB; 0 when unknown.
fn peak_memory_mb(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb.div_ceil(1024))
}

/// The environment Lambda gives a function's process.
fn lambda_environment(
    config: &InvokerConfig,
    function: &FunctionConfig,
    code_dir: &Path,
    api: &RuntimeApi,
    scratch: &Path,
) -> Vec<(String, String)> {
    let name = function.name.as_str();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.address.to_string()),
        ("LAMBDA_TASK_ROOT", code_dir.display().to_string()),
        (
            "LAMBDA_RUNTIME_DIR",
            runtimes::runtime_dir(config).display().to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            function.memory_mb.to_string(),
        ),
        ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("nimbus/{}", uuid::Uuid::new_v4().simple()),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        (
            "AWS_EXECUTION_ENV",
            format!("AWS_Lambda_{}", function.runtime),
        ),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        ("PATH", path),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("HOME", scratch.display().to_string()),
        ("TMPDIR", scratch.display().to_string()),
    ];
    if let Some(handler) = &function.handler {
        env.push(("_HANDLER", handler.clone()));
    }
    if matches!(function.runtime, Runtime::Python { .. }) {
        env.push(("PYTHONUNBUFFERED", "1".to_owned()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
