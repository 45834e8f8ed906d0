//! Starts the real `nimbus` binary as processes (one `nimbus dev`, or a gateway, an invoker,
//! a DLQ service and queue-workers over gRPC on Postgres and Redis), deploys functions with
//! the real CLI, and stops everything on drop.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod otlp;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const NIMBUS: &str = env!("CARGO_BIN_EXE_nimbus");

/// One running `nimbus` process, stopped with SIGTERM (then SIGKILL) on drop.
pub struct Process {
    child: Child,
    /// What the process announced on stdout: its listening address (a queue-worker: its
    /// consumer name).
    pub address: String,
    /// The admin endpoint (`http://...`) once announced, with `NIMBUS_ADMIN_LISTEN` set.
    admin: Arc<Mutex<Option<String>>>,
    /// Every `nimbus: <what> listening on <address>` line, by what.
    listeners: Arc<Mutex<Vec<(String, String)>>>,
}

impl Process {
    /// Starts `nimbus ARGS` and waits for the line `nimbus: <what> listening on <address>`
    /// (or `nimbus: queue-worker running as <consumer>`).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Process {
        let mut command = Command::new(NIMBUS);
        command
            .args(args)
            .env("RUST_LOG", "info,nimbus_invoker=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start nimbus");
        let stdout = child.stdout.take().unwrap();
        let (found, address) = mpsc::channel();
        let admin = Arc::new(Mutex::new(None));
        let admin_found = admin.clone();
        let listeners = Arc::new(Mutex::new(Vec::new()));
        let listeners_found = listeners.clone();
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("nimbus: ")
                    && let Some((what, address)) = rest.split_once(" listening on ")
                {
                    listeners_found
                        .lock()
                        .unwrap()
                        .push((what.to_owned(), address.trim().to_owned()));
                }
                if let Some(rest) = line.strip_prefix("nimbus: ")
                    && let Some((_, url)) = rest.split_once(" admin on ")
                {
                    *admin_found.lock().unwrap() = Some(url.trim().to_owned());
                }
                if !announced
                    && let Some(rest) = line.strip_prefix("nimbus: ")
                    && let Some((_, address)) = rest
                        .split_once(" listening on ")
                        .or_else(|| rest.split_once(" running as "))
                {
                    announced = true;
                    let _ = found.send(address.trim().to_owned());
                }
            }
        });
        let address = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("nimbus {args:?} did not announce its address"));
        Process {
            child,
            address,
            admin,
            listeners,
        }
    }

    /// The address announced as `nimbus: <what> listening on <address>`, waiting for it.
    pub fn listener(&self, what: &str) -> String {
        for _ in 0..600 {
            let listeners = self.listeners.lock().unwrap();
            if let Some((_, address)) = listeners.iter().find(|(name, _)| name == what) {
                return address.clone();
            }
            drop(listeners);
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {what} listener was announced");
    }

    /// The admin endpoint, waiting for its announcement.
    pub fn admin_url(&self) -> String {
        for _ in 0..600 {
            if let Some(url) = self.admin.lock().unwrap().clone() {
                return url;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no admin endpoint was announced");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        signal(self.child.id(), "TERM");
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// A Nimbus platform under test: its HTTP endpoint and the processes behind it.
pub struct Platform {
    pub endpoint: String,
    pub data_dir: tempfile::TempDir,
    /// The gateway, invoker and DLQ service (or the one `nimbus dev`).
    processes: Vec<Process>,
    workers: Vec<Process>,
    envs: Vec<(String, String)>,
    distributed: Option<Distributed>,
}

/// What the separate services of a distributed platform share.
struct Distributed {
    database: TestDatabase,
    redis: TestRedis,
    invoker_url: String,
    dlq_url: String,
}

impl Platform {
    /// `nimbus dev` on the embedded store and queue, with extra `NIMBUS_*` settings.
    pub fn dev(envs: &[(&str, &str)]) -> Platform {
        let data_dir = tempfile::tempdir().unwrap();
        let mut platform = Platform {
            endpoint: String::new(),
            data_dir,
            processes: Vec::new(),
            workers: Vec::new(),
            envs: owned(envs),
            distributed: None,
        };
        platform.start_dev();
        platform
    }

    fn start_dev(&mut self) {
        let dir = self.data_dir.path().to_str().unwrap().to_owned();
        let process = Process::start(
            &["dev", "--listen", "127.0.0.1:0", "--data-dir", &dir],
            &borrowed(&self.envs),
        );
        self.endpoint = process.address.clone();
        self.processes.push(process);
    }

    /// SIGKILLs `nimbus dev` and starts it again on the same data folder (on a new port).
    pub fn crash_and_restart_dev(&mut self) {
        assert!(self.distributed.is_none(), "only for nimbus dev");
        self.processes.pop().unwrap().kill();
        self.start_dev();
    }

    /// A gateway, an invoker, a DLQ service and one queue-worker as separate processes
    /// talking gRPC, on a fresh Postgres database and a Redis key prefix of their own.
    pub fn distributed(envs: &[(&str, &str)]) -> Platform {
        Self::distributed_through(envs, str::to_owned)
    }

    /// Like [`distributed`](Self::distributed), but every service reaches the database at
    /// `through(its URL)`: a proxy the test controls, say.
    pub fn distributed_through(
        envs: &[(&str, &str)],
        through: impl Fn(&str) -> String,
    ) -> Platform {
        let mut database = TestDatabase::create();
        database.url = through(&database.url);
        let redis = TestRedis::new();
        let data_dir = tempfile::tempdir().unwrap();
        let dir = data_dir.path().to_str().unwrap().to_owned();
        let mut envs = owned(envs);
        envs.push(("NIMBUS_REDIS_URL".into(), redis.url.clone()));
        envs.push(("NIMBUS_REDIS_KEY_PREFIX".into(), redis.prefix.clone()));
        let invoker = Process::start(
            &[
                "invoker",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                &dir,
                "--database-url",
                &database.url,
            ],
            &borrowed(&envs),
        );
        let invoker_url = format!("http://{}", invoker.address);
        let dlq = Process::start(
            &[
                "dlq",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database.url,
            ],
            &borrowed(&envs),
        );
        let dlq_url = format!("http://{}", dlq.address);
        let gateway = Process::start(
            &[
                "gateway",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database.url,
                "--invoker-url",
                &invoker_url,
                "--dlq-url",
                &dlq_url,
            ],
            &borrowed(&envs),
        );
        let mut platform = Platform {
            endpoint: gateway.address.clone(),
            data_dir,
            processes: vec![gateway, dlq, invoker],
            workers: Vec::new(),
            envs,
            distributed: Some(Distributed {
                database,
                redis,
                invoker_url,
                dlq_url,
            }),
        };
        platform.start_worker();
        platform
    }

    /// Starts one more queue-worker process (distributed platforms only).
    pub fn start_worker(&mut self) {
        let services = self
            .distributed
            .as_ref()
            .expect("only for distributed platforms");
        let worker = Process::start(
            &[
                "queue-worker",
                "--database-url",
                &services.database.url,
                "--invoker-url",
                &services.invoker_url,
                "--dlq-url",
                &services.dlq_url,
            ],
            &borrowed(&self.envs),
        );
        self.workers.push(worker);
    }

    /// SIGTERMs the oldest queue-worker and waits for it to exit.
    pub fn terminate_worker(&mut self) -> std::process::ExitStatus {
        self.workers.remove(0).terminate()
    }

    /// SIGTERMs `nimbus dev`, waits for it to exit, and starts it again on the same data
    /// folder (on a new port).
    pub fn restart_dev(&mut self) -> std::process::ExitStatus {
        assert!(self.distributed.is_none(), "only for nimbus dev");
        let status = self.processes.pop().unwrap().terminate();
        self.start_dev();
        status
    }

    /// SIGKILLs the oldest queue-worker.
    pub fn kill_worker(&mut self) {
        self.workers.remove(0).kill();
    }

    /// The admin endpoints of every process, services first, then workers.
    pub fn admin_urls(&self) -> Vec<String> {
        self.processes
            .iter()
            .chain(&self.workers)
            .map(Process::admin_url)
            .collect()
    }

    pub fn is_distributed(&self) -> bool {
        self.distributed.is_some()
    }

    /// Deploys `dir` with `nimbus fn deploy`, panicking with the CLI's output on failure.
    pub fn deploy(&self, dir: &Path, name: &str, runtime: &str, extra: &[&str]) {
        let output = self.cli(
            &[
                &[
                    "fn",
                    "deploy",
                    dir.to_str().unwrap(),
                    "--name",
                    name,
                    "--runtime",
                    runtime,
                ],
                extra,
            ]
            .concat(),
        );
        assert!(
            output.status.success(),
            "deploy {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs the `nimbus` CLI against this platform.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(NIMBUS)
            .args(args)
            .env("NIMBUS_ENDPOINT", &self.endpoint)
            .output()
            .expect("run nimbus")
    }

    /// Runs the `nimbus` CLI against this platform with more environment variables (keys to
    /// sign with, say).
    pub fn cli_with_env(&self, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
        Command::new(NIMBUS)
            .args(args)
            .env("NIMBUS_ENDPOINT", &self.endpoint)
            .envs(envs.iter().copied())
            .output()
            .expect("run nimbus")
    }

    /// The gRPC URLs of the invoker and the DLQ service (distributed platforms only).
    pub fn grpc_urls(&self) -> (String, String) {
        let services = self
            .distributed
            .as_ref()
            .expect("only for distributed platforms");
        (services.invoker_url.clone(), services.dlq_url.clone())
    }

    /// An address the first process (`nimbus dev` or the gateway) announced besides its own.
    pub fn listener(&self, what: &str) -> String {
        self.processes[0].listener(what)
    }

    /// The process ids of the gateway, invoker and DLQ service (or of the one `nimbus dev`).
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(Process::pid).collect()
    }

    pub fn invoke_url(&self, name: &str) -> String {
        format!("{}/2015-03-31/functions/{name}/invocations", self.endpoint)
    }

    /// SIGTERMs every process, workers first, and returns how each exited.
    pub fn stop(mut self) -> Vec<std::process::ExitStatus> {
        let workers = self.workers.drain(..).map(Process::terminate);
        let services = self.processes.drain(..).map(Process::terminate);
        workers
            .collect::<Vec<_>>()
            .into_iter()
            .chain(services)
            .collect()
    }
}

impl Drop for Platform {
    /// Stops the processes before the database, Redis keys and data folder go.
    fn drop(&mut self) {
        self.workers.clear();
        self.processes.clear();
    }
}

fn owned(envs: &[(&str, &str)]) -> Vec<(String, String)> {
    envs.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn borrowed(envs: &[(String, String)]) -> Vec<(&str, &str)> {
    envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A Redis key prefix of its own for one test; its keys are deleted afterwards.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
}

impl TestRedis {
    pub fn new() -> TestRedis {
        TestRedis {
            url: std::env::var("NIMBUS_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            prefix: format!("nimbus_e2e_{}", uuid_simple()),
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        for key in ["events", "delayed"] {
            let _ = Command::new("redis-cli")
                .args(["-u", &self.url, "DEL", &format!("{}:{key}", self.prefix)])
                .output();
        }
    }
}

/// A Postgres database of its own for one test, dropped afterwards.
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin = std::env::var("NIMBUS_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("nimbus_e2e_{}", uuid_simple());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').unwrap().0;
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// What `psql` prints for `sql`: unaligned, tuples only.
pub fn psql_query(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-qtAc", sql])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `sql`, which must succeed.
pub fn psql(url: &str, sql: &str) {
    psql_query(url, sql);
}

fn uuid_simple() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}_{nanos}", std::process::id())
}

/// A temporary folder every user can reach and write to: when the tests run as root,
/// functions run as users of their own and leave files there for the tests.
pub fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Writes a function's files into a fresh folder.
pub fn function_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    dir
}

/// The workspace's `target/<profile>` folder, where the Rust example's `bootstrap` is built.
pub fn target_dir() -> PathBuf {
    PathBuf::from(NIMBUS).parent().unwrap().to_path_buf()
}
