//! One instance: a function's runtime process, in its own process group, with its own Runtime
//! API server, scratch folder and captured output. It runs one invocation at a time and is
//! retired (its whole process group killed and reaped) after a timeout, a crash or an init
//! failure.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use nimbus_core::invocation::error_document;
use nimbus_core::{
    FunctionConfig, FunctionError, InvokeOutcome, InvokeRequest, RequestId, Runtime, limits,
};
use tokio::process::Child;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{INIT_TIMEOUT, InvokerConfig};
use crate::isolation::{Isolation, Limits, Sandbox};
use crate::logs::{InstanceLogs, Stream};
use crate::runtime_api::{Event, Readiness, Reply, RuntimeApi};
use crate::runtimes;

/// Tells instances apart in the pool (a pid may be reused once its process is reaped).
pub(crate) type InstanceId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Lambda's error type for a function that exceeded its memory.
const OUT_OF_MEMORY: &str = "Runtime.OutOfMemory";

pub(crate) struct Instance {
    pub(crate) id: InstanceId,
    pid: u32,
    function_name: String,
    memory_mb: u32,
    api: RuntimeApi,
    logs: InstanceLogs,
    streams: tokio::sync::Mutex<Vec<Stream>>,
    /// Asks the supervisor to kill the process group.
    kill: CancellationToken,
    /// How the process ended, once it has been reaped.
    exit: watch::Receiver<Option<ExitStatus>>,
    spawned_at: Instant,
    /// Set once the first invocation has been handed over (init is over).
    initialised: AtomicBool,
}

/// Why an instance could not be started.
pub(crate) enum StartError {
    /// The operating system refused to run the runtime's executable.
    Exec {
        program: PathBuf,
        error: std::io::Error,
    },
    /// Nimbus could not set the instance up.
    Setup(nimbus_core::Error),
}

/// How an invocation on an instance ended, and whether the instance may serve again.
pub(crate) struct Ran {
    pub(crate) outcome: InvokeOutcome,
    pub(crate) reusable: bool,
    /// A warm instance's process was gone before it took the event: the function never ran,
    /// so the invocation may run elsewhere.
    pub(crate) untouched: bool,
}

impl Instance {
    /// Starts the runtime process; it initialises while the first invocation waits for it.
    pub(crate) async fn spawn(
        config: &InvokerConfig,
        isolation: &Isolation,
        function: &FunctionConfig,
        code_dir: &Path,
    ) -> Result<Instance, StartError> {
        let setup = |what: &str, e: std::io::Error| {
            StartError::Setup(nimbus_core::Error::Service(format!(
                "cannot start an instance of {}: {what}: {e}",
                function.name
            )))
        };
        let root = config.data_dir.join("instances");
        let name = function.name.to_string();
        let code = code_dir.to_path_buf();
        let users = isolation.users.clone();
        let sandbox = tokio::task::spawn_blocking(move || {
            Sandbox::create(&root, &name, &code, users.as_deref())
        })
        .await
        .map_err(|e| setup("instance folder", std::io::Error::other(e)))?
        .map_err(|e| setup("instance folder", e))?;
        let api = match RuntimeApi::start(sandbox.user.as_ref().map(|user| user.id)).await {
            Ok(api) => api,
            Err(e) => {
                remove_sandbox(sandbox).await;
                return Err(setup("runtime API", e));
            }
        };

        let mut command = runtimes::command(
            config,
            &isolation.interpreters,
            function,
            &sandbox.task_root,
        );
        command
            .env_clear()
            .envs(&function.environment)
            .envs(lambda_environment(config, function, &api, &sandbox))
            .current_dir(&sandbox.task_root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = &sandbox.user {
            // std drops the supplementary groups too, and switching away from root drops
            // every capability.
            command.uid(user.id).gid(user.id);
        }
        let limits = Limits::new(
            function.memory_mb,
            config.function_open_files,
            config.function_processes,
            sandbox.user.is_some(),
        );
        // SAFETY: `apply` only makes system calls (see there): async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || limits.apply());
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                remove_sandbox(sandbox).await;
                let program = PathBuf::from(command.as_std().get_program());
                return Err(StartError::Exec { program, error });
            }
        };
        let pid = child.id().unwrap_or_default();

        let logs = InstanceLogs::new(function.name.as_str());
        let mut streams = Vec::with_capacity(2);
        let stdout = child.stdout.take().map(|pipe| pipe.into_owned_fd());
        let stderr = child.stderr.take().map(|pipe| pipe.into_owned_fd());
        for pipe in [stdout, stderr].into_iter().flatten() {
            match pipe.and_then(|fd| logs.capture(fd)) {
                Ok(stream) => streams.push(stream),
                Err(e) => {
                    // The child is killed when dropped; reap it before giving up.
                    let _ = child.kill().await;
                    remove_sandbox(sandbox).await;
                    return Err(setup("output capture", e));
                }
            }
        }
        let kill = CancellationToken::new();
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(supervise(child, pid, kill.clone(), exit_tx, sandbox));
        tracing::debug!(function = %function.name, pid, "instance started");
        Ok(Instance {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pid,
            function_name: function.name.to_string(),
            memory_mb: function.memory_mb,
            api,
            logs,
            streams: tokio::sync::Mutex::new(streams),
            kill,
            exit,
            spawned_at: Instant::now(),
            initialised: AtomicBool::new(false),
        })
    }

    /// Waits, without submitting an event, until the runtime has initialised (its first
    /// `GET .../next`), for provisioned concurrency: the first invocation is then warm, with
    /// no `Init Duration`. The reason when init fails, the process exits or init takes longer
    /// than Lambda allows; the caller stops the instance then.
    pub(crate) async fn initialise(&self) -> Result<(), String> {
        let mut readiness = self.api.readiness();
        let mut exit = self.exit.clone();
        let settled = async {
            readiness
                .wait_for(|readiness| *readiness != Readiness::Starting)
                .await
                .map(|readiness| readiness.clone())
        };
        tokio::select! {
            settled = settled => match settled {
                Ok(Readiness::Ready) => {}
                Ok(Readiness::InitFailed(error_type)) => {
                    return Err(format!(
                        "The function's initialisation failed ({}).",
                        error_type.as_deref().unwrap_or("Runtime.Unknown")
                    ));
                }
                Ok(Readiness::Starting) | Err(_) => {
                    return Err("the runtime API stopped".to_owned());
                }
            },
            status = exited(&mut exit) => {
                return Err(format!(
                    "the runtime exited during initialisation: {}",
                    describe_exit(status)
                ));
            }
            () = tokio::time::sleep(INIT_TIMEOUT) => {
                return Err(format!(
                    "the runtime did not initialise within {} seconds",
                    INIT_TIMEOUT.as_secs()
                ));
            }
        }
        self.initialised.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs one invocation to its end: a reply, a timeout, or the process' exit.
    pub(crate) async fn invoke(&self, request: &InvokeRequest, function_arn: String) -> Ran {
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

        // Until the runtime takes the event it is initialising, with its own budget; from
        // then on the invocation has its full timeout.
        let mut deadline = started + INIT_TIMEOUT.max(timeout);
        let mut taken_at = None;
        let mut awaiting_take = true;
        let mut exit = self.exit.clone();
        let ending = match self.api.submit(event).await {
            None => Ending::Exited(self.wait_exit().await),
            Some(mut reply) => loop {
                tokio::select! {
                    // A runtime that replies and then exits has replied.
                    biased;
                    reply = &mut reply => break match reply {
                        Ok(reply) => Ending::Replied(reply),
                        Err(_) => Ending::Exited(self.wait_exit().await),
                    },
                    at = &mut taken, if awaiting_take => {
                        awaiting_take = false;
                        if let Ok(at) = at {
                            taken_at = Some(at);
                            deadline = at + timeout;
                        }
                    }
                    status = exited(&mut exit) => break Ending::Exited(status),
                    () = tokio::time::sleep_until(deadline) => break Ending::TimedOut,
                }
            },
        };
        let ended = Instant::now();
        if awaiting_take {
            taken_at = taken.try_recv().ok();
        }
        let duration = ended.duration_since(taken_at.unwrap_or(started));
        let init_duration = taken_at
            .filter(|_| cold)
            .map(|at| at.duration_since(self.spawned_at));
        // Read only when someone will see it (the log tail, or debug logs): it is a file read
        // on the hot path. Before a timeout's kill: a reaped process has no figures left.
        let report_wanted = request.want_log_tail || tracing::enabled!(tracing::Level::DEBUG);
        let max_memory_used_mb = if report_wanted {
            peak_memory_mb(self.pid)
        } else {
            0
        };
        if matches!(ending, Ending::TimedOut) {
            self.kill.cancel();
        }
        self.logs.settle(&mut self.streams.lock().await).await;

        let untouched = !cold && taken_at.is_none() && matches!(ending, Ending::Exited(_));
        let verdict = self.interpret(ending, id, timeout);
        if let Some(line) = &verdict.log_line {
            self.logs.append(line);
        }
        if !verdict.reusable {
            tracing::info!(
                function = %self.function_name,
                request_id = %id,
                error_type = verdict.error_type.as_deref().unwrap_or_default(),
                "instance retired"
            );
        }
        let report = report_line(
            id,
            duration,
            self.memory_mb,
            max_memory_used_mb,
            init_duration,
        );
        tracing::debug!(function = %self.function_name, request_id = %id, "{report}");
        let log = self.logs.finish(&report);
        Ran {
            outcome: InvokeOutcome {
                payload: verdict.payload,
                function_error: verdict.function_error,
                error_type: verdict.error_type,
                executed_version: function.version.clone(),
                duration,
                init_duration,
                max_memory_used_mb,
                log_tail: request.want_log_tail.then(|| crate::logs::tail(&log)),
            },
            reusable: verdict.reusable,
            untouched,
        }
    }

    fn interpret(&self, ending: Ending, id: RequestId, timeout: Duration) -> Verdict {
        let failed = |error_type: &str, message: String, reusable: bool| Verdict {
            payload: error_document(error_type, &message),
            function_error: Some(FunctionError::Unhandled),
            error_type: Some(error_type.to_owned()),
            reusable,
            log_line: Some(message),
        };
        match ending {
            Ending::Replied(Reply::Response(body)) => Verdict {
                payload: body,
                function_error: None,
                error_type: None,
                reusable: true,
                log_line: None,
            },
            // A runtime that reports running out of memory (Nimbus' Python bootstrap on a
            // MemoryError) cannot be trusted with another invocation, as on Lambda, where the
            // out-of-memory killer ends it.
            Ending::Replied(Reply::Error { error_type, .. })
                if error_type.as_deref() == Some(OUT_OF_MEMORY) =>
            {
                failed(
                    OUT_OF_MEMORY,
                    format!(
                        "RequestId: {id} Error: Runtime exited with error: out of memory (Memory Size: {} MB)",
                        self.memory_mb
                    ),
                    false,
                )
            }
            Ending::Replied(Reply::Error { error_type, body }) => Verdict {
                payload: body,
                function_error: Some(FunctionError::Unhandled),
                error_type,
                reusable: true,
                log_line: None,
            },
            Ending::Replied(Reply::InitError { error_type, body }) => {
                let error_type = error_type.unwrap_or_else(|| "Runtime.Unknown".to_owned());
                if body.is_empty() {
                    let message =
                        format!("RequestId: {id} Error: the runtime failed to initialise");
                    return failed(&error_type, message, false);
                }
                Verdict {
                    payload: body,
                    function_error: Some(FunctionError::Unhandled),
                    error_type: Some(error_type),
                    reusable: false,
                    log_line: None,
                }
            }
            Ending::Replied(Reply::TooLarge) => failed(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    limits::MAX_SYNC_PAYLOAD_BYTES
                ),
                true,
            ),
            Ending::TimedOut => failed(
                "Sandbox.Timedout",
                format!(
                    "RequestId: {id} Error: Task timed out after {:.2} seconds",
                    timeout.as_secs_f64()
                ),
                false,
            ),
            Ending::Exited(status) => failed(
                "Runtime.ExitError",
                format!(
                    "RequestId: {id} Error: Runtime exited with error: {}",
                    describe_exit(status)
                ),
                false,
            ),
        }
    }

    async fn wait_exit(&self) -> ExitStatus {
        exited(&mut self.exit.clone()).await
    }

    /// Kills the process group without waiting; the supervisor reaps the process.
    pub(crate) fn kill(&self) {
        self.kill.cancel();
    }

    /// Kills the process group and waits until the process is reaped.
    pub(crate) async fn stop(&self) {
        self.kill.cancel();
        self.wait_exit().await;
        tracing::debug!(function = %self.function_name, pid = self.pid, "instance stopped");
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }
}

impl Drop for Instance {
    /// An instance nobody holds any more can never be used again: its processes go with it.
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

struct Verdict {
    payload: Bytes,
    function_error: Option<FunctionError>,
    error_type: Option<String>,
    reusable: bool,
    /// What Nimbus itself adds to the invocation's log, as Lambda does for platform errors.
    log_line: Option<String>,
}

enum Ending {
    Replied(Reply),
    TimedOut,
    Exited(ExitStatus),
}

/// Owns the child process: waits until it exits or is to be killed, kills its whole process
/// group either way (whatever the runtime left behind goes with it), reaps it, reports how it
/// ended, and removes the instance's folder and every process left under its user.
async fn supervise(
    mut child: Child,
    pid: u32,
    kill: CancellationToken,
    exit: watch::Sender<Option<ExitStatus>>,
    sandbox: Sandbox,
) {
    let status = tokio::select! {
        () = kill.cancelled() => {
            kill_group(pid);
            child.wait().await
        }
        status = child.wait() => status,
    };
    // Right after reaping the leader: while other members live, the group id stays theirs
    // and cannot be reused; with none left this finds nothing.
    kill_group(pid);
    remove_sandbox(sandbox).await;
    let status = status.unwrap_or_else(|error| {
        tracing::warn!(pid, %error, "cannot reap an instance");
        ExitStatus::from_raw(0)
    });
    let _ = exit.send(Some(status));
}

async fn remove_sandbox(sandbox: Sandbox) {
    if let Err(error) = tokio::task::spawn_blocking(move || sandbox.remove()).await {
        tracing::warn!(%error, "cannot clean up after an instance");
    }
}

/// Waits for the process to be reaped and returns how it ended.
async fn exited(exit: &mut watch::Receiver<Option<ExitStatus>>) -> ExitStatus {
    let status = exit.wait_for(Option::is_some).await.map(|status| *status);
    // The supervisor sends a status before it drops the sender.
    status
        .ok()
        .flatten()
        .unwrap_or_else(|| ExitStatus::from_raw(0))
}

/// As Lambda words it: `exit status 1`, `signal: 9 (SIGKILL)`.
fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match signal_name(signal) {
            Some(name) => format!("signal: {signal} ({name})"),
            None => format!("signal: {signal}"),
        },
        (None, None) => "unknown".to_owned(),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return None,
    };
    Some(name)
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

/// Lambda's `REPORT` line.
fn report_line(
    id: RequestId,
    duration: Duration,
    memory_mb: u32,
    max_memory_used_mb: u64,
    init_duration: Option<Duration>,
) -> String {
    let mut report = format!(
        "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_used_mb} MB",
        duration.as_secs_f64() * 1000.0,
        duration.as_micros().div_ceil(1000).max(1),
    );
    if let Some(init) = init_duration {
        report.push_str(&format!(
            "\tInit Duration: {:.2} ms",
            init.as_secs_f64() * 1000.0
        ));
    }
    report
}

/// The environment Lambda gives a function's process.
fn lambda_environment(
    config: &InvokerConfig,
    function: &FunctionConfig,
    api: &RuntimeApi,
    sandbox: &Sandbox,
) -> Vec<(String, String)> {
    let name = function.name.as_str();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let mut env = vec![
        ("AWS_LAMBDA_RUNTIME_API", api.address.to_string()),
        ("LAMBDA_TASK_ROOT", sandbox.task_root.display().to_string()),
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
            log_stream_name(&function.version),
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
        ("HOME", sandbox.tmp.display().to_string()),
        ("TMPDIR", sandbox.tmp.display().to_string()),
    ];
    if let Some(handler) = &function.handler {
        env.push(("_HANDLER", handler.clone()));
    }
    if matches!(function.runtime, Runtime::Python { .. }) {
        env.push(("PYTHONUNBUFFERED", "1".to_owned()));
    }
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `2024/05/01/[$LATEST]0123456789abcdef0123456789abcdef`, as Lambda names its log streams.
fn log_stream_name(version: &str) -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "{:04}/{:02}/{:02}/[{version}]{}",
        today.year(),
        u8::from(today.month()),
        today.day(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_as_lambda_does() {
        assert_eq!(describe_exit(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(
            describe_exit(ExitStatus::from_raw(9)),
            "signal: 9 (SIGKILL)"
        );
    }

    #[test]
    fn reports_have_lambda_fields() {
        let id = RequestId::new();
        let warm = report_line(id, Duration::from_micros(12_346), 128, 20, None);
        assert_eq!(
            warm,
            format!(
                "REPORT RequestId: {id}\tDuration: 12.35 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB"
            )
        );
        let cold = report_line(
            id,
            Duration::from_millis(1),
            128,
            20,
            Some(Duration::from_micros(45_670)),
        );
        assert!(cold.ends_with("\tInit Duration: 45.67 ms"), "{cold}");
    }
}
