//! The distributed topology as real processes of this `nimbus` executable: an invoker, a DLQ
//! service, a gateway and queue-workers, each on fixed free ports so a restarted service
//! answers where its peers expect it. A service is ready when its admin `/readyz` says so.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a service may take to become ready after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed service may take to drain before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One service process. It runs in a process group of its own, so a Ctrl-C at the terminal
/// reaches only the chaos run, which then stops it; it is SIGKILLed if dropped while
/// running.
pub struct Service {
    pub name: String,
    args: Vec<String>,
    admin: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    fn new(name: &str, args: Vec<String>, admin: SocketAddr, logs: &Path) -> Self {
        Self {
            name: name.to_owned(),
            args,
            admin,
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts the process (its output appended to its log file) and waits until it is
    /// ready.
    async fn start(
        &mut self,
        exe: &Path,
        envs: &[(String, String)],
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let child = Command::new(exe)
            .args(&self.args)
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        self.child = Some(child);
        self.wait_ready(http).await
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("http://{}/readyz", self.admin);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}) before it was ready; see {}",
                    self.name,
                    self.log.display()
                );
            }
            let ready = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready within {READY_TIMEOUT:?}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            child
                .wait()
                .await
                .with_context(|| format!("cannot reap {}", self.name))?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not drained in time.
    async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if !status.success() => {
                tracing::warn!(service = %self.name, %status, "exited uncleanly after SIGTERM");
            }
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(service = %self.name, "did not stop within {STOP_TIMEOUT:?}; SIGKILL");
                child.start_kill().ok();
                let _ = child.wait().await;
            }
        }
    }
}

/// Where the topology's services reach the store and the queue.
pub struct Backends {
    pub database_url: String,
    pub redis_url: String,
}

/// Settings every service of the run gets, as `NIMBUS_*` variables.
pub struct Tuning {
    pub max_inflight: usize,
}

/// One service of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Worker(usize),
    Invoker,
    Dlq,
    Gateway,
}

/// The running services.
pub struct Topology {
    exe: PathBuf,
    envs: Vec<(String, String)>,
    http: reqwest::Client,
    /// The HTTP API, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
    invoker: Service,
    dlq: Service,
    gateway: Service,
    workers: Vec<Service>,
    _data_dir: tempfile::TempDir,
}

impl Topology {
    /// Starts the invoker (which brings the schema up to date), the DLQ service, the gateway
    /// and `workers` queue-workers, one after the other, each ready before the next starts.
    pub async fn start(
        backends: &Backends,
        tuning: &Tuning,
        workers: usize,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the nimbus executable")?;
        let data_dir = tempfile::tempdir().context("cannot create the invoker's data folder")?;
        let invoker_listen = free_address()?;
        let dlq_listen = free_address()?;
        let gateway_listen = free_address()?;
        let invoker_url = format!("http://{invoker_listen}");
        let dlq_url = format!("http://{dlq_listen}");
        let envs: Vec<(String, String)> = [
            ("NIMBUS_DATABASE_URL", backends.database_url.as_str()),
            ("NIMBUS_REDIS_URL", &backends.redis_url),
            ("NIMBUS_REDIS_KEY_PREFIX", "nimbus-chaos"),
            ("NIMBUS_INVOKER_URL", &invoker_url),
            ("NIMBUS_DLQ_URL", &dlq_url),
            // A killed worker's events come back within seconds, and retries follow fast,
            // so the run drains in minutes rather than Lambda's hours.
            ("NIMBUS_VISIBILITY_TIMEOUT", "5s"),
            ("NIMBUS_RETRY_BASE_DELAY", "200ms"),
            ("NIMBUS_SYSTEM_RETRY_BASE_DELAY", "100ms"),
            ("NIMBUS_SYSTEM_RETRY_MAX_DELAY", "2s"),
            ("NIMBUS_DRAIN_TIMEOUT", "10s"),
            ("NIMBUS_MAX_INFLIGHT", &tuning.max_inflight.to_string()),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let data = data_dir.path().display().to_string();
        let invoker = Service::new(
            "invoker",
            strings(&[
                "invoker",
                "--listen",
                &invoker_listen.to_string(),
                "--data-dir",
                &data,
            ]),
            free_address()?,
            logs,
        );
        let dlq = Service::new(
            "dlq",
            strings(&["dlq", "--listen", &dlq_listen.to_string()]),
            free_address()?,
            logs,
        );
        let gateway = Service::new(
            "gateway",
            strings(&["gateway", "--listen", &gateway_listen.to_string()]),
            free_address()?,
            logs,
        );
        let mut topology = Self {
            exe,
            envs,
            http: reqwest::Client::new(),
            endpoint: format!("http://{gateway_listen}"),
            invoker,
            dlq,
            gateway,
            workers: Vec::new(),
            _data_dir: data_dir,
        };
        for n in 1..=workers {
            topology.workers.push(Service::new(
                &format!("queue-worker-{n}"),
                strings(&["queue-worker"]),
                free_address()?,
                logs,
            ));
        }
        let services = [Target::Invoker, Target::Dlq, Target::Gateway]
            .into_iter()
            .chain((0..workers).map(Target::Worker));
        for target in services {
            topology.restart(target).await?;
        }
        Ok(topology)
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    pub fn service(&mut self, target: Target) -> anyhow::Result<&mut Service> {
        match target {
            Target::Invoker => Ok(&mut self.invoker),
            Target::Dlq => Ok(&mut self.dlq),
            Target::Gateway => Ok(&mut self.gateway),
            Target::Worker(n) => self.workers.get_mut(n).context("no such queue-worker"),
        }
    }

    /// Starts `target` (again, after a kill), and waits until it is ready.
    pub async fn restart(&mut self, target: Target) -> anyhow::Result<()> {
        let (exe, envs, http) = (self.exe.clone(), self.envs.clone(), self.http.clone());
        self.service(target)?.start(&exe, &envs, &http).await
    }

    /// SIGTERMs every service, queue-workers first (they drain through the invoker and the
    /// DLQ service), the invoker last.
    pub async fn stop(mut self) {
        for worker in &mut self.workers {
            worker.stop().await;
        }
        self.gateway.stop().await;
        self.dlq.stop().await;
        self.invoker.stop().await;
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

/// A loopback address with a port nobody listens on right now.
pub fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}
