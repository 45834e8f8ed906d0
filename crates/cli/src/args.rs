//! The `nimbus` command line: every flag has a `NIMBUS_*` environment equivalent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use nimbus_telemetry::LogFormat;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
pub const DEFAULT_INVOKER_LISTEN: &str = "127.0.0.1:9100";
pub const DEFAULT_DLQ_LISTEN: &str = "127.0.0.1:9200";
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9000";
pub const DEFAULT_DATA_DIR: &str = ".nimbus";

#[derive(Debug, Parser)]
#[command(
    name = "nimbus",
    version,
    about = "Nimbus: run AWS Lambda functions on machines you own"
)]
pub struct Cli {
    /// Log line format: text or json.
    #[arg(long, env = "NIMBUS_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform in one process on an embedded store.
    Dev(DevArgs),
    /// Run the gateway (the HTTP API) alone, calling a remote invoker over gRPC.
    Gateway(GatewayArgs),
    /// Run the invoker (the gRPC service that runs functions) alone.
    Invoker(InvokerArgs),
    /// Run a queue-worker: take Event invocations from Redis and run them, with retries.
    QueueWorker(QueueWorkerArgs),
    /// Run the DLQ service (no subcommand), or list, show, redrive and purge dead letters.
    Dlq(DlqArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(MigrateArgs),
    /// Deploy, list, show and delete functions.
    #[command(subcommand, name = "fn")]
    Function(FunctionCommand),
    /// Invoke a function and print its result.
    Invoke(InvokeArgs),
    /// Look up invocation records.
    #[command(subcommand, visible_alias = "invocation")]
    Invocations(InvocationCommand),
    /// Declare, list and remove HTTP routes (a method and path mapped to a function).
    #[command(subcommand)]
    Route(RouteCommand),
    /// Measure sync invoke latency and throughput against a loopback HTTP echo.
    Bench(BenchArgs),
    /// Run the distributed topology on real Postgres and Redis, send events while killing
    /// and restarting its processes, and check that every accepted event ended exactly once.
    Chaos(ChaosArgs),
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Folder for the embedded store, unpacked code and runtime files.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Store URL; defaults to the SQLite file `nimbus.db` in the data folder.
    #[arg(long, env = "NIMBUS_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL for the event queue; defaults to the SQLite queue `queue.db` in the data
    /// folder.
    #[arg(long, env = "NIMBUS_REDIS_URL")]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub gateway: GatewayLimits,

    #[command(flatten)]
    pub triggers: TriggerArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub instances: InstanceArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "NIMBUS_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub peers: PeerArgs,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub limits: GatewayLimits,

    #[command(flatten)]
    pub triggers: TriggerArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Who may call the HTTP API: with keys, every request must be signed (AWS Signature
/// Version 4) by one of them; without, anyone who reaches the port may call it.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// An AWS shared-credentials file: `[profile]` sections with `aws_access_key_id` and
    /// `aws_secret_access_key`, one accepted key each.
    #[arg(long, env = "NIMBUS_CREDENTIALS_FILE")]
    pub credentials_file: Option<PathBuf>,

    /// One more accepted key's id (with --secret-access-key).
    #[arg(long, env = "NIMBUS_ACCESS_KEY_ID")]
    pub access_key_id: Option<String>,

    /// The secret of --access-key-id; better given in the environment than on the command
    /// line.
    #[arg(long, env = "NIMBUS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
}

/// The secret Nimbus' services present to each other over gRPC.
#[derive(Debug, Args)]
pub struct ServiceTokenArgs {
    /// Shared by every service of a deployment: the invoker and the DLQ service answer only
    /// callers presenting it, and the gateway and queue-workers present it. Without it, gRPC
    /// calls are not authenticated.
    #[arg(long, env = "NIMBUS_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Serve `/healthz` and `/readyz` on this HTTP address (e.g. 0.0.0.0:9090) for
    /// liveness and readiness probes; off when unset.
    #[arg(long, env = "NIMBUS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

/// What the gateway and a queue-worker reach: the store, the queue and the other services.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Store URL (`postgres://...`, or `sqlite://PATH` on one host).
    #[arg(long, env = "NIMBUS_DATABASE_URL")]
    pub database_url: String,

    /// Redis URL of the event queue, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "NIMBUS_REDIS_URL")]
    pub redis_url: String,

    /// gRPC address of the invoker, e.g. http://127.0.0.1:9100.
    #[arg(long, env = "NIMBUS_INVOKER_URL")]
    pub invoker_url: String,

    /// gRPC address of the DLQ service, e.g. http://127.0.0.1:9200.
    #[arg(long, env = "NIMBUS_DLQ_URL")]
    pub dlq_url: String,

    #[command(flatten)]
    pub token: ServiceTokenArgs,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Prefix of the Redis keys of the event queue; services sharing a queue share it.
    #[arg(long, env = "NIMBUS_REDIS_KEY_PREFIX", default_value = "nimbus")]
    pub redis_key_prefix: String,

    /// How long a claimed event stays hidden from other workers without a heartbeat; a
    /// worker that dies mid-event leaves it to another after this long.
    #[arg(long, env = "NIMBUS_VISIBILITY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct QueueWorkerArgs {
    #[command(flatten)]
    pub peers: PeerArgs,

    /// AWS region shown in the ARNs of invocation records.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// How long the worker reuses a function's configuration before reading it again.
    #[arg(long, env = "NIMBUS_FUNCTION_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub function_cache_ttl: Duration,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Events a queue-worker runs at once.
    #[arg(long, env = "NIMBUS_MAX_INFLIGHT", default_value_t = nimbus_queue_worker::config::DEFAULT_MAX_INFLIGHT)]
    pub max_inflight: usize,

    /// Wait before the first retry of a failed event; each later retry waits twice as long
    /// as the one before, plus jitter (Lambda: about 1 minute, then 2).
    #[arg(long, env = "NIMBUS_RETRY_BASE_DELAY", default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_base_delay: Duration,

    /// First back-off after a throttle or a Nimbus failure; it doubles up to
    /// --system-retry-max-delay.
    #[arg(long, env = "NIMBUS_SYSTEM_RETRY_BASE_DELAY", default_value = "1s", value_parser = humantime::parse_duration)]
    pub system_retry_base_delay: Duration,

    #[arg(long, env = "NIMBUS_SYSTEM_RETRY_MAX_DELAY", default_value = "5m", value_parser = humantime::parse_duration)]
    pub system_retry_max_delay: Duration,

    /// How long shutdown waits for running events before leaving them to be redelivered.
    #[arg(long, env = "NIMBUS_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Let callback URLs reach any address. By default only public addresses are called
    /// back: never loopback, private or link-local ones (such as a cloud's metadata service),
    /// which a caller could otherwise reach through the worker.
    #[arg(long, env = "NIMBUS_CALLBACK_ALLOW_PRIVATE")]
    pub callback_allow_private: bool,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: Option<DlqCommand>,

    #[command(flatten)]
    pub serve: DlqServeArgs,
}

#[derive(Debug, Args)]
pub struct DlqServeArgs {
    /// Address the gRPC service listens on.
    #[arg(long, env = "NIMBUS_DLQ_LISTEN", default_value = DEFAULT_DLQ_LISTEN)]
    pub listen: SocketAddr,

    /// Store URL (`postgres://...`) where dead letters are kept.
    #[arg(long, env = "NIMBUS_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL of the event queue redriven letters go back to.
    #[arg(long, env = "NIMBUS_REDIS_URL")]
    pub redis_url: Option<String>,

    #[command(flatten)]
    pub token: ServiceTokenArgs,

    #[command(flatten)]
    pub queue: QueueArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        #[command(flatten)]
        filter: DeadLetterFilterArgs,
        /// Letters per page, at most 100.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The page token a previous listing printed.
        #[arg(long)]
        next: Option<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Show one dead letter with its payload and every attempt.
    Show {
        request_id: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Queue dead letters again as fresh invocations: one by request id, or a filtered set.
    Redrive(DeadLetterSelectionArgs),
    /// Delete dead letters: one by request id, or a filtered set.
    Purge(DeadLetterSelectionArgs),
}

#[derive(Debug, Args)]
pub struct DeadLetterFilterArgs {
    /// Only this function's letters.
    #[arg(long)]
    pub function: Option<String>,
    /// Only letters dead-lettered at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only letters dead-lettered before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeadLetterSelectionArgs {
    /// One letter's request id; without it, the filter selects.
    pub request_id: Option<String>,
    #[command(flatten)]
    pub filter: DeadLetterFilterArgs,
    /// Select every letter (no filter needed).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Store URL (`postgres://...` or `sqlite://PATH`).
    #[arg(long, env = "NIMBUS_DATABASE_URL")]
    pub database_url: String,
}

#[derive(Debug, Args)]
pub struct GatewayLimits {
    /// Largest synchronous invoke payload, in bytes.
    #[arg(long, env = "NIMBUS_MAX_SYNC_PAYLOAD", default_value_t = nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES)]
    pub max_sync_payload: usize,

    /// Largest asynchronous (Event) invoke payload, in bytes.
    #[arg(long, env = "NIMBUS_MAX_ASYNC_PAYLOAD", default_value_t = nimbus_core::limits::MAX_ASYNC_PAYLOAD_BYTES)]
    pub max_async_payload: usize,

    /// AWS region the API reports in ARNs and to functions.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// How long the gateway reuses a function's configuration before reading it again.
    /// Changes made through this gateway apply at once; through another, within this time.
    #[arg(long, env = "NIMBUS_FUNCTION_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub function_cache_ttl: Duration,

    /// The account's concurrency GetAccountSettings reports; reserved concurrency must leave
    /// 100 of it unreserved.
    #[arg(long, env = "NIMBUS_ACCOUNT_CONCURRENCY", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..))]
    pub account_concurrency: u32,

    /// Events the queue may hold (ready, retrying and running) before Event invokes are
    /// refused with 429 TooManyRequestsException; `unlimited` (or 0) for no bound.
    #[arg(long, env = "NIMBUS_MAX_QUEUE_BACKLOG", default_value_t = BacklogBound(Some(nimbus_gateway::DEFAULT_MAX_QUEUE_BACKLOG)), value_parser = parse_backlog_bound)]
    pub max_queue_backlog: BacklogBound,

    /// How long a connection may take to send a request's headers before it is closed.
    #[arg(long, env = "NIMBUS_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long a request's body may take to arrive (plus a second per 64 KiB received)
    /// before the request is answered 400 and its connection closed.
    #[arg(long, env = "NIMBUS_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_read_timeout: Duration,
}

/// A bound on the event queue's backlog, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogBound(pub Option<u64>);

impl std::fmt::Display for BacklogBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(events) => write!(f, "{events}"),
            None => f.write_str("unlimited"),
        }
    }
}

fn parse_backlog_bound(value: &str) -> Result<BacklogBound, String> {
    if value.eq_ignore_ascii_case("unlimited") {
        return Ok(BacklogBound(None));
    }
    let events: u64 = value
        .parse()
        .map_err(|_| format!("expected a number of events or `unlimited`, got {value:?}"))?;
    Ok(BacklogBound((events > 0).then_some(events)))
}

/// Where the gateway serves HTTP triggers: routes and function URLs.
#[derive(Debug, Clone, Args)]
pub struct TriggerArgs {
    /// Path prefix under which routes are served on the API's port (`/api` serves
    /// `GET /orders` at `/api/orders`); an empty value serves them only on --routes-listen.
    #[arg(long, env = "NIMBUS_ROUTES_PREFIX", default_value = nimbus_gateway::DEFAULT_ROUTES_PREFIX)]
    pub routes_prefix: String,

    /// A second address that serves the routes at its root (and function URLs under
    /// /lambda-url/), without the Lambda API.
    #[arg(long, env = "NIMBUS_ROUTES_LISTEN")]
    pub routes_listen: Option<SocketAddr>,

    /// The address callers reach the gateway at (e.g. https://fn.example.com), used in the
    /// FunctionUrl of function URLs; by default the Host the request was sent to.
    #[arg(long, env = "NIMBUS_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Default for TriggerArgs {
    fn default() -> Self {
        Self {
            routes_prefix: nimbus_gateway::DEFAULT_ROUTES_PREFIX.to_owned(),
            routes_listen: None,
            public_url: None,
        }
    }
}

impl GatewayLimits {
    /// The HTTP server's read deadlines.
    pub fn serve_options(&self) -> nimbus_gateway::ServeOptions {
        nimbus_gateway::ServeOptions {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
        }
    }
}

impl TriggerArgs {
    /// The validated prefix, `None` when empty.
    pub fn routes_prefix(&self) -> anyhow::Result<Option<String>> {
        if self.routes_prefix.is_empty() {
            return Ok(None);
        }
        nimbus_gateway::validate_routes_prefix(&self.routes_prefix).map_err(anyhow::Error::msg)?;
        Ok(Some(self.routes_prefix.clone()))
    }
}

#[derive(Debug, Args)]
pub struct InvokerArgs {
    /// Address the gRPC service listens on.
    #[arg(long, env = "NIMBUS_INVOKER_LISTEN", default_value = DEFAULT_INVOKER_LISTEN)]
    pub listen: SocketAddr,

    /// Store URL the invoker fetches function code from.
    #[arg(long, env = "NIMBUS_DATABASE_URL")]
    pub database_url: String,

    /// Folder for unpacked code and runtime files.
    #[arg(long, env = "NIMBUS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// AWS region reported to functions.
    #[arg(long, env = "NIMBUS_REGION", default_value = "us-east-1")]
    pub region: String,

    #[command(flatten)]
    pub token: ServiceTokenArgs,

    #[command(flatten)]
    pub instances: InstanceArgs,

    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// Concurrent instances per function when it has no reserved concurrency.
    #[arg(long, env = "NIMBUS_FUNCTION_CONCURRENCY", default_value_t = 100)]
    pub function_concurrency: u32,

    /// Instances this node runs at most, over all functions.
    #[arg(long, env = "NIMBUS_MAX_INSTANCES", default_value_t = 256)]
    pub max_instances: u32,

    /// How long an idle warm instance is kept before it is stopped.
    #[arg(long, env = "NIMBUS_IDLE_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Python interpreter for python3.x functions.
    #[arg(long, env = "NIMBUS_PYTHON", default_value = "python3")]
    pub python: PathBuf,

    /// Node.js interpreter for nodejs*.x functions.
    #[arg(long, env = "NIMBUS_NODE", default_value = "node")]
    pub node: PathBuf,

    /// When Nimbus runs as root, each instance runs as a user id of its own from FIRST-LAST;
    /// `off` runs instances as root (docs/security.md).
    #[arg(long, env = "NIMBUS_FUNCTION_UIDS", default_value = "50000-59999")]
    pub function_uids: nimbus_invoker::FunctionUids,

    /// Open files an instance's process may have (RLIMIT_NOFILE).
    #[arg(long, env = "NIMBUS_FUNCTION_OPEN_FILES", default_value_t = 1024)]
    pub function_open_files: u64,

    /// Processes and threads an instance may run (RLIMIT_NPROC), with a user id of its own.
    #[arg(long, env = "NIMBUS_FUNCTION_PROCESSES", default_value_t = 1024)]
    pub function_processes: u64,
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// The gateway to talk to.
    #[arg(long, env = "NIMBUS_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
}

#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Map METHOD PATH to FUNCTION: `nimbus route add GET /orders/{id} getOrder`.
    Add(RouteAddArgs),
    /// List the routes.
    #[command(visible_alias = "ls")]
    List(EndpointArgs),
    /// Remove a route, by its id or by METHOD PATH.
    #[command(visible_alias = "remove")]
    Rm {
        /// The route's id (as `route list` shows it), or its method followed by its path.
        #[arg(required = true, num_args = 1..=2)]
        route: Vec<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

#[derive(Debug, Args)]
pub struct RouteAddArgs {
    /// An HTTP method (GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS) or ANY.
    pub method: String,
    /// The path: literal segments, `{name}` parameters and a last greedy `{name+}`.
    pub path: String,
    /// The function the route runs, optionally as NAME:VERSION or NAME:ALIAS.
    pub function: String,
    /// Queue the request as an event and answer 202 at once (the caller may still ask for a
    /// synchronous run with `X-Amz-Invocation-Type: RequestResponse`).
    #[arg(long = "async")]
    pub run_async: bool,
    /// How long a synchronous request waits for the function before a 504.
    #[arg(long, default_value = "29s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// NONE, or AWS_IAM to take only requests signed with the gateway's keys.
    #[arg(long, default_value = "NONE")]
    pub auth: String,
    /// Allow cross-origin requests from this origin (or `*`); repeat for more.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Methods cross-origin requests may use (default: the route's).
    #[arg(long = "cors-method")]
    pub cors_methods: Vec<String>,
    /// Headers cross-origin requests may send.
    #[arg(long = "cors-header")]
    pub cors_headers: Vec<String>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Create a function from a folder or zip, or update it if it exists.
    Deploy(DeployArgs),
    /// List functions.
    List(EndpointArgs),
    /// Show a function's configuration.
    Get {
        name: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// Delete a function.
    Delete {
        name: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// A folder (zipped for you) or a zip file.
    pub path: PathBuf,
    #[arg(long)]
    pub name: String,
    /// e.g. python3.12, nodejs20.x, provided.al2023.
    #[arg(long)]
    pub runtime: String,
    /// `module.function` (python, node); optional for provided runtimes.
    #[arg(long)]
    pub handler: Option<String>,
    /// Seconds, 1 to 900.
    #[arg(long)]
    pub timeout: Option<u32>,
    /// Megabytes, 128 to 10240.
    #[arg(long)]
    pub memory: Option<u32>,
    /// An environment variable, KEY=VALUE; repeat for more.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub environment: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The function: NAME, or NAME:VERSION / NAME:ALIAS to run a published version.
    pub name: String,
    /// The event: JSON text, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// RequestResponse (wait for the result), Event (queue it) or DryRun (check only).
    #[arg(long = "type", default_value = "RequestResponse")]
    pub invocation_type: String,
    /// Print the tail of the invocation's log.
    #[arg(long)]
    pub tail: bool,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}

#[derive(Debug, Subcommand)]
pub enum InvocationCommand {
    /// Show the record of one invocation.
    #[command(visible_alias = "get")]
    Show {
        request_id: String,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
    /// List invocation records, newest first.
    List {
        /// Only this function's invocations.
        #[arg(long)]
        function: Option<String>,
        /// Only invocations in this state: queued, running, retrying, succeeded, failed,
        /// dead_lettered.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The page token a previous listing printed.
        #[arg(long)]
        next: Option<String>,
        #[command(flatten)]
        endpoint: EndpointArgs,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Seconds each measurement runs.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent clients to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub clients: Vec<usize>,
    /// Runtime of the no-op function: python3.12, nodejs20.x, or provided.al2023 (the Rust
    /// example, built with `cargo build --release -p nimbus-example-rust-hello`).
    #[arg(long, default_value = "python3.12")]
    pub runtime: String,
    /// Redis for the async figures: the platform's event queue and the raw `XADD`
    /// baseline use keys of their own there, deleted afterwards.
    #[arg(
        long,
        env = "NIMBUS_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// Store for the platform (records are written there); defaults to a SQLite file in a
    /// temporary folder.
    #[arg(long)]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub instances: InstanceArgs,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Asynchronous events to send.
    #[arg(long, default_value_t = 5000)]
    pub events: usize,
    /// Events sent per second; the faults fall while they are being sent.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Fraction of function attempts that fail (0 to 1).
    #[arg(long, default_value_t = 0.3)]
    pub fail_rate: f64,
    /// Seed of the fault schedule (when each fault strikes); random when unset.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Queue-worker SIGKILLs (each followed by a restart).
    #[arg(long, default_value_t = 4)]
    pub worker_kills: usize,
    /// Invoker SIGKILLs (each followed by a restart).
    #[arg(long, default_value_t = 2)]
    pub invoker_kills: usize,
    /// DLQ service SIGKILLs (each followed by a restart).
    #[arg(long, default_value_t = 2)]
    pub dlq_kills: usize,
    /// Gateway SIGKILLs (each followed by a restart); sends it was answering get no `202`.
    #[arg(long, default_value_t = 0)]
    pub gateway_kills: usize,
    /// Redis crashes (SIGKILL, then a restart on the same append-only file).
    #[arg(long, default_value_t = 1)]
    pub redis_restarts: usize,
    /// Times every Postgres connection of the run's database is terminated.
    #[arg(long, default_value_t = 1)]
    pub postgres_drops: usize,
    /// How long the events may take to reach a terminal state once sent; what has not by
    /// then is counted lost.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub drain_deadline: Duration,
    /// Postgres server to run on: the run creates a database of its own there and drops it
    /// at the end.
    #[arg(
        long,
        env = "NIMBUS_CHAOS_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// The `redis-server` executable; the run starts a private one on a free port with its
    /// append-only file in a temporary folder.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// The private Redis' `appendfsync`: `always` (every write on disk before Redis
    /// answers) or `everysec`.
    #[arg(long, default_value = "always", value_parser = ["always", "everysec"])]
    pub redis_fsync: String,
    /// Events each queue-worker runs at once.
    #[arg(long, default_value_t = 8)]
    pub max_inflight: usize,
    /// Keep the services' log files (their folder is printed) instead of deleting them.
    #[arg(long)]
    pub keep_logs: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_bound_is_a_count_or_unlimited() {
        assert_eq!(parse_backlog_bound("5"), Ok(BacklogBound(Some(5))));
        assert_eq!(parse_backlog_bound("unlimited"), Ok(BacklogBound(None)));
        assert_eq!(parse_backlog_bound("0"), Ok(BacklogBound(None)));
        assert!(parse_backlog_bound("-1").is_err());
        assert!(parse_backlog_bound("lots").is_err());
        let default = BacklogBound(Some(nimbus_gateway::DEFAULT_MAX_QUEUE_BACKLOG));
        assert_eq!(parse_backlog_bound(&default.to_string()), Ok(default));
    }
}
