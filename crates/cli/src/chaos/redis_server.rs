//! A private `redis-server` for one chaos run: its own free port and a temporary folder for
//! its append-only file, so crashing and restarting it disturbs no other Redis on the
//! machine. Nothing is ever snapshotted (`save ""`): the AOF alone carries the queue
//! across a restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tokio::time::Instant;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PrivateRedis {
    executable: PathBuf,
    address: SocketAddr,
    fsync: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts `redis-server` with `appendonly yes` and `appendfsync <fsync>`.
    pub async fn start(executable: PathBuf, fsync: &str) -> anyhow::Result<Self> {
        let mut redis = Self {
            executable,
            address: super::topology::free_address()?,
            fsync: fsync.to_owned(),
            dir: tempfile::tempdir().context("cannot create a folder for Redis")?,
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = self.dir.path().join("redis.log");
        let child = Command::new(&self.executable)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.address.port().to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                &self.fsync,
                "--save",
                "",
            ])
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.executable.display()))?;
        self.child = Some(child);
        let client = redis::Client::open(self.url())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("redis-server exited ({status}); see {}", log.display());
            }
            // Loading the AOF answers `-LOADING`: only a PONG means it serves again.
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("redis-server did not answer within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILLs Redis (a crash: nothing is flushed on the way out), waits `down`, and starts
    /// it again on the same port and append-only file.
    pub async fn crash_and_restart(&mut self, down: Duration) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            child.wait().await.context("cannot reap redis-server")?;
        }
        tokio::time::sleep(down).await;
        self.spawn().await
    }

    /// Stops Redis; its folder goes when `self` is dropped.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().ok();
            let _ = child.wait().await;
        }
    }
}
