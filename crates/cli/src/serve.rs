//! Runs the services: all in one process (`nimbus dev`) or one per process (`nimbus gateway`,
//! `nimbus invoker`, `nimbus queue-worker`, `nimbus dlq`). Each announces
//! `nimbus: <service> listening on <address>` (the queue-worker: `nimbus: queue-worker
//! running as <consumer>`) on stdout once it is ready, and drains on the shutdown token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use nimbus_core::sigv4::{self, Credentials};
use nimbus_core::{DeadLetters, Invoker, RetryPolicy};
use nimbus_dlq::DeadLetterService;
use nimbus_dlq::grpc::RemoteDeadLetters;
use nimbus_gateway::{AppState, GatewayConfig, ServeOptions};
use nimbus_invoker::{InvokerConfig, LocalInvoker};
use nimbus_proto::auth::ServiceToken;
use nimbus_queue::{EventQueue, RedisQueue, RedisQueueConfig, SqliteQueue, SqliteQueueConfig};
use nimbus_queue_worker::{CallbackNetworks, QueueWorker, WorkerConfig};
use nimbus_store::{RecordWriter, RecordWriterConfig, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Dependency};
use crate::args::{
    AdminArgs, AuthArgs, DevArgs, DlqServeArgs, GatewayArgs, GatewayLimits, InstanceArgs,
    InvokerArgs, MigrateArgs, PeerArgs, QueueArgs, QueueWorkerArgs, ServiceTokenArgs, TriggerArgs,
    WorkerArgs,
};

/// The consumer group every queue-worker of a queue joins.
const CONSUMER_GROUP: &str = "workers";

pub async fn dev(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => embedded_url(&args.data_dir, "nimbus.db")?,
    };
    let queue = match &args.redis_url {
        Some(url) => redis_queue(url, &args.queue).await?,
        None => embedded_queue(&args.data_dir, &args.queue).await?,
    };
    let credentials = api_credentials(&args.auth)?;
    let config = gateway_config(&args.gateway, &args.triggers, credentials)?;
    let listener = bind(args.listen).await?;
    let routes_listener = bind_routes(&args.triggers).await?;
    let platform = InProcessPlatform::start(
        &database_url,
        queue,
        invoker_config(&args.data_dir, &args.gateway.region, &args.instances),
        config,
        args.gateway.function_cache_ttl,
        worker_config(&args.worker, &args.queue, &args.gateway.region),
    )
    .await?
    .with_serve_options(args.gateway.serve_options());
    let address = listener.local_addr()?;
    announce("dev", &format!("http://{address}"));
    serve_admin("dev", &args.admin, platform.dependencies(), &shutdown).await?;
    print_dev_help(address, &args.data_dir);
    let routes = platform.serve_routes(routes_listener, &shutdown);
    let served = platform.serve(listener, shutdown).await;
    join_routes(routes).await;
    served
}

pub async fn gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let credentials = api_credentials(&args.auth)?;
    let config = gateway_config(&args.limits, &args.triggers, credentials)?;
    let Peers {
        store,
        queue,
        invoker,
        dead_letters,
    } = Peers::connect(&args.peers, &args.queue).await?;
    let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
    let listener = bind(args.listen).await?;
    announce("gateway", &format!("http://{}", listener.local_addr()?));
    let mut dependencies = vec![
        Dependency::Store(store.clone()),
        Dependency::Queue(queue.clone()),
    ];
    dependencies.extend(peer_dependencies(&args.peers));
    serve_admin("gateway", &args.admin, dependencies, &shutdown).await?;
    let state = AppState::new(
        cached(store, args.limits.function_cache_ttl),
        invoker,
        queue,
        dead_letters,
        records.clone(),
        config,
    );
    let options = args.limits.serve_options();
    let routes = spawn_routes(
        bind_routes(&args.triggers).await?,
        nimbus_gateway::routes_router(state.clone()),
        options,
        &shutdown,
    );
    let router = nimbus_gateway::router(state);
    let served =
        nimbus_gateway::serve_with(listener, router, options, shutdown.cancelled_owned()).await;
    join_routes(routes).await;
    records.shutdown().await;
    served.context("the gateway failed")
}

pub async fn invoker(args: InvokerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let token = server_token("invoker", &args.token)?;
    let store = connect_store(&args.database_url).await?;
    let invoker = LocalInvoker::start(
        invoker_config(&args.data_dir, &args.region, &args.instances),
        store.clone(),
    )
    .await
    .context("cannot start the invoker")?;
    let listener = bind(args.listen).await?;
    announce("invoker", &listener.local_addr()?.to_string());
    serve_admin(
        "invoker",
        &args.admin,
        vec![Dependency::Store(store)],
        &shutdown,
    )
    .await?;
    let served = nimbus_invoker::grpc::serve(
        listener,
        invoker.clone() as Arc<dyn Invoker>,
        token,
        shutdown.cancelled_owned(),
    )
    .await;
    invoker.shutdown().await;
    served.context("the invoker's gRPC server failed")
}

pub async fn queue_worker(
    args: QueueWorkerArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Peers {
        store,
        queue,
        invoker,
        dead_letters,
    } = Peers::connect(&args.peers, &args.queue).await?;
    let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
    let config = worker_config(&args.worker, &args.queue, &args.region);
    let consumer = config.consumer.clone();
    let worker = QueueWorker::new(
        queue.clone(),
        invoker,
        dead_letters,
        cached(store.clone(), args.function_cache_ttl),
        records.clone(),
        config,
    );
    println!("nimbus: queue-worker running as {consumer}");
    let mut dependencies = vec![Dependency::Store(store), Dependency::Queue(queue)];
    dependencies.extend(peer_dependencies(&args.peers));
    serve_admin("queue-worker", &args.admin, dependencies, &shutdown).await?;
    worker.run(shutdown).await;
    records.shutdown().await;
    Ok(())
}

pub async fn dlq(args: DlqServeArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let token = server_token("DLQ service", &args.token)?;
    let database_url = args
        .database_url
        .context("the DLQ service needs --database-url (or NIMBUS_DATABASE_URL)")?;
    let redis_url = args
        .redis_url
        .context("the DLQ service needs --redis-url (or NIMBUS_REDIS_URL)")?;
    let store = connect_store(&database_url).await?;
    let queue = redis_queue(&redis_url, &args.queue).await?;
    let service: Arc<dyn DeadLetters> =
        Arc::new(DeadLetterService::new(store.clone(), queue.clone()));
    let listener = bind(args.listen).await?;
    announce("dlq", &listener.local_addr()?.to_string());
    let dependencies = vec![Dependency::Store(store), Dependency::Queue(queue)];
    serve_admin("dlq", &args.admin, dependencies, &shutdown).await?;
    nimbus_dlq::grpc::serve(listener, service, token, shutdown.cancelled_owned())
        .await
        .context("the DLQ service's gRPC server failed")
}

pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    // Opening a store brings its schema up to date.
    connect_store(&args.database_url).await?;
    println!(
        "nimbus: the schema at {} is up to date",
        redacted(&args.database_url)
    );
    Ok(())
}

/// Every service in one process, sharing a store, a queue and a record writer: `nimbus dev`
/// and the benchmark.
pub struct InProcessPlatform {
    dependencies: Vec<Dependency>,
    invoker: Arc<LocalInvoker>,
    worker: QueueWorker,
    records: RecordWriter,
    router: axum::Router,
    routes_router: axum::Router,
    serve_options: ServeOptions,
}

impl InProcessPlatform {
    pub async fn start(
        database_url: &str,
        queue: Arc<dyn EventQueue>,
        invoker_config: InvokerConfig,
        gateway_config: GatewayConfig,
        function_cache_ttl: std::time::Duration,
        worker_config: WorkerConfig,
    ) -> anyhow::Result<Self> {
        let store = connect_store(database_url).await?;
        let invoker = LocalInvoker::start(invoker_config, store.clone())
            .await
            .context("cannot start the invoker")?;
        let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let dead_letters: Arc<dyn DeadLetters> =
            Arc::new(DeadLetterService::new(store.clone(), queue.clone()));
        let dependencies = vec![
            Dependency::Store(store.clone()),
            Dependency::Queue(queue.clone()),
        ];
        let store = cached(store, function_cache_ttl);
        let worker = QueueWorker::new(
            queue.clone(),
            invoker.clone() as Arc<dyn Invoker>,
            dead_letters.clone(),
            store.clone(),
            records.clone(),
            worker_config,
        );
        let state = AppState::new(
            store,
            invoker.clone() as Arc<dyn Invoker>,
            queue,
            dead_letters,
            records.clone(),
            gateway_config,
        );
        Ok(Self {
            dependencies,
            invoker,
            worker,
            records,
            routes_router: nimbus_gateway::routes_router(state.clone()),
            router: nimbus_gateway::router(state),
            serve_options: ServeOptions::default(),
        })
    }

    /// The HTTP server's read deadlines, instead of the defaults.
    pub fn with_serve_options(mut self, options: ServeOptions) -> Self {
        self.serve_options = options;
        self
    }

    /// What the platform needs to be ready: its store and its queue.
    pub fn dependencies(&self) -> Vec<Dependency> {
        self.dependencies.clone()
    }

    /// The queue-worker, for a caller that runs it on its own (see
    /// [`serve_api`](Self::serve_api)).
    pub fn worker(&self) -> QueueWorker {
        self.worker.clone()
    }

    pub fn records(&self) -> RecordWriter {
        self.records.clone()
    }

    /// Serves the routes on `listener`, if given, until `shutdown`.
    pub fn serve_routes(
        &self,
        listener: Option<TcpListener>,
        shutdown: &CancellationToken,
    ) -> Option<tokio::task::JoinHandle<std::io::Result<()>>> {
        spawn_routes(
            listener,
            self.routes_router.clone(),
            self.serve_options,
            shutdown,
        )
    }

    /// Serves the HTTP API and runs queued events until `shutdown`; then lets running
    /// events finish, stops instances and flushes records.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let worker = tokio::spawn({
            let worker = self.worker.clone();
            let shutdown = shutdown.clone();
            async move { worker.run(shutdown).await }
        });
        self.serve_then_stop(listener, shutdown, Some(worker)).await
    }

    /// Serves the HTTP API only: queued events wait until the caller runs
    /// [`worker`](Self::worker) (the benchmark measures accepting and draining apart).
    pub async fn serve_api(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        self.serve_then_stop(listener, shutdown, None).await
    }

    /// Serves the HTTP API until `shutdown`, then stops `worker` (it drains its running
    /// events through the invoker, so it goes first), the invoker and the record writer.
    async fn serve_then_stop(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
        worker: Option<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let served = nimbus_gateway::serve_with(
            listener,
            self.router,
            self.serve_options,
            shutdown.cancelled_owned(),
        )
        .await;
        if let Some(worker) = worker
            && let Err(error) = worker.await
        {
            tracing::error!(%error, "the queue-worker task failed");
        }
        self.invoker.shutdown().await;
        self.records.shutdown().await;
        served.context("the gateway failed")
    }
}

/// Starts the admin endpoint if `--admin-listen` asks for one.
async fn serve_admin(
    service: &str,
    args: &AdminArgs,
    dependencies: Vec<Dependency>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    match args.admin_listen {
        Some(address) => admin::start(service, address, dependencies, shutdown.clone()).await,
        None => Ok(()),
    }
}

/// Services read function configurations through a short-lived cache.
fn cached(store: Arc<dyn Store>, ttl: std::time::Duration) -> Arc<dyn Store> {
    Arc::new(nimbus_store::CachedStore::new(store, ttl))
}

async fn connect_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    nimbus_store::connect(url)
        .await
        .with_context(|| format!("cannot open the store at {}", redacted(url)))
}

pub async fn redis_queue(url: &str, args: &QueueArgs) -> anyhow::Result<Arc<dyn EventQueue>> {
    let config = RedisQueueConfig {
        key_prefix: args.redis_key_prefix.clone(),
        group: CONSUMER_GROUP.to_owned(),
        visibility_timeout: args.visibility_timeout,
        max_len: None,
    };
    let queue = RedisQueue::connect(url, config)
        .await
        .with_context(|| format!("cannot open the event queue at {}", redacted(url)))?;
    Ok(Arc::new(queue))
}

pub async fn embedded_queue(
    data_dir: &Path,
    args: &QueueArgs,
) -> anyhow::Result<Arc<dyn EventQueue>> {
    let url = embedded_url(data_dir, "queue.db")?;
    let config = SqliteQueueConfig {
        visibility_timeout: args.visibility_timeout,
    };
    let queue = SqliteQueue::connect(&url, config)
        .await
        .with_context(|| format!("cannot open the event queue at {url}"))?;
    Ok(Arc::new(queue))
}

/// What the gateway and a queue-worker work with when each service is its own process.
struct Peers {
    store: Arc<dyn Store>,
    queue: Arc<dyn EventQueue>,
    invoker: Arc<dyn Invoker>,
    dead_letters: Arc<dyn DeadLetters>,
}

impl Peers {
    async fn connect(args: &PeerArgs, queue: &QueueArgs) -> anyhow::Result<Self> {
        let token = service_token(&args.token)?;
        let invoker =
            nimbus_invoker::grpc::RemoteInvoker::connect(&args.invoker_url, token.as_ref())
                .await
                .with_context(|| format!("invalid invoker URL {}", args.invoker_url))?;
        let dead_letters = RemoteDeadLetters::connect(&args.dlq_url, token.as_ref())
            .with_context(|| format!("invalid DLQ service URL {}", args.dlq_url))?;
        Ok(Self {
            store: connect_store(&args.database_url).await?,
            queue: redis_queue(&args.redis_url, queue).await?,
            invoker: Arc::new(invoker),
            dead_letters: Arc::new(dead_letters),
        })
    }
}

/// The services the gateway and a queue-worker call, for their readiness.
fn peer_dependencies(peers: &PeerArgs) -> [Dependency; 2] {
    [
        Dependency::Peer {
            name: "invoker",
            url: peers.invoker_url.clone(),
        },
        Dependency::Peer {
            name: "dlq",
            url: peers.dlq_url.clone(),
        },
    ]
}

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// A URL with its password, if any, hidden.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A SQLite URL for `file` in the data folder, which is created if missing.
fn embedded_url(data_dir: &Path, file: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    Ok(format!("sqlite://{}", data_dir.join(file).display()))
}

pub fn invoker_config(data_dir: &Path, region: &str, instances: &InstanceArgs) -> InvokerConfig {
    InvokerConfig {
        data_dir: data_dir.to_path_buf(),
        default_function_concurrency: instances.function_concurrency,
        max_instances: instances.max_instances,
        idle_timeout: instances.idle_timeout,
        python: instances.python.clone(),
        node: instances.node.clone(),
        region: region.to_owned(),
        function_uids: instances.function_uids.0.clone(),
        function_open_files: instances.function_open_files,
        function_processes: instances.function_processes,
        ..InvokerConfig::default()
    }
}

pub fn worker_config(args: &WorkerArgs, queue: &QueueArgs, region: &str) -> WorkerConfig {
    WorkerConfig {
        // Three heartbeats per timeout: one may be late or lost without losing the claim.
        heartbeat_interval: queue.visibility_timeout / 3,
        max_inflight: args.max_inflight,
        retry: RetryPolicy {
            function_error_base: args.retry_base_delay,
            system_error_base: args.system_retry_base_delay,
            system_error_max: args.system_retry_max_delay,
        },
        drain_timeout: args.drain_timeout,
        callback_networks: if args.callback_allow_private {
            CallbackNetworks::Any
        } else {
            CallbackNetworks::PublicOnly
        },
        region: region.to_owned(),
        ..WorkerConfig::default()
    }
}

pub fn gateway_config(
    limits: &GatewayLimits,
    triggers: &TriggerArgs,
    credentials: Vec<Credentials>,
) -> anyhow::Result<GatewayConfig> {
    Ok(GatewayConfig {
        max_sync_payload_bytes: limits.max_sync_payload,
        max_async_payload_bytes: limits.max_async_payload,
        region: limits.region.clone(),
        account_concurrency: limits.account_concurrency,
        credentials,
        routes_prefix: triggers.routes_prefix()?,
        public_url: triggers.public_url.clone(),
        max_queue_backlog: limits.max_queue_backlog.0,
        ..GatewayConfig::default()
    })
}

/// The routes' own listener, when `--routes-listen` asks for one.
async fn bind_routes(triggers: &TriggerArgs) -> anyhow::Result<Option<TcpListener>> {
    let Some(address) = triggers.routes_listen else {
        return Ok(None);
    };
    Ok(Some(bind(address).await?))
}

fn spawn_routes(
    listener: Option<TcpListener>,
    router: axum::Router,
    options: ServeOptions,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<std::io::Result<()>>> {
    let shutdown = shutdown.clone();
    listener.map(|listener| {
        // After the API's own line, which scripts take as the service's address.
        if let Ok(address) = listener.local_addr() {
            announce("routes", &format!("http://{address}"));
        }
        tokio::spawn(async move {
            nimbus_gateway::serve_with(listener, router, options, shutdown.cancelled_owned()).await
        })
    })
}

async fn join_routes(routes: Option<tokio::task::JoinHandle<std::io::Result<()>>>) {
    let Some(routes) = routes else { return };
    match routes.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(%error, "the routes listener failed"),
        Err(error) => tracing::error!(%error, "the routes listener task failed"),
    }
}

/// The keys the HTTP API accepts: the credentials file's and the one in
/// `--access-key-id`/`--secret-access-key`. None is allowed, and said loudly.
fn api_credentials(args: &AuthArgs) -> anyhow::Result<Vec<Credentials>> {
    let mut keys = match &args.credentials_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the credentials file {}", path.display()))?;
            sigv4::parse_credentials_file(&text).map_err(|e| {
                anyhow::anyhow!("the credentials file {} is not usable: {e}", path.display())
            })?
        }
        None => Vec::new(),
    };
    // An empty variable (`NIMBUS_ACCESS_KEY_ID=`) is an unset one.
    let given = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
    match (given(&args.access_key_id), given(&args.secret_access_key)) {
        (Some(id), Some(secret)) => {
            if keys.iter().any(|key| key.access_key_id() == id) {
                anyhow::bail!("access key id {id} is given twice");
            }
            keys.push(Credentials::new(id, secret));
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "--access-key-id (NIMBUS_ACCESS_KEY_ID) and --secret-access-key \
             (NIMBUS_SECRET_ACCESS_KEY) go together"
        ),
    }
    if keys.is_empty() {
        tracing::warn!(
            "no credentials configured (--credentials-file, or NIMBUS_ACCESS_KEY_ID and \
             NIMBUS_SECRET_ACCESS_KEY): the HTTP API accepts unsigned requests from anyone \
             who can reach it"
        );
    } else {
        let ids: Vec<&str> = keys.iter().map(Credentials::access_key_id).collect();
        tracing::info!(keys = ?ids, "every request must be signed (SigV4) by one of these keys");
    }
    Ok(keys)
}

/// The token gRPC clients present, if configured.
fn service_token(args: &ServiceTokenArgs) -> anyhow::Result<Option<ServiceToken>> {
    args.service_token
        .as_deref()
        .map(ServiceToken::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--service-token (NIMBUS_SERVICE_TOKEN): {e}"))
}

/// The token a gRPC server asks of its callers; without one it warns that it asks nothing.
fn server_token(service: &str, args: &ServiceTokenArgs) -> anyhow::Result<Option<ServiceToken>> {
    let token = service_token(args)?;
    if token.is_none() {
        tracing::warn!(
            "no service token configured (--service-token or NIMBUS_SERVICE_TOKEN): the \
             {service} accepts gRPC calls from anyone who can reach it"
        );
    }
    Ok(token)
}

/// The machine-readable line tests and scripts wait for.
fn announce(service: &str, address: &str) {
    println!("nimbus: {service} listening on {address}");
}

fn print_dev_help(address: SocketAddr, data_dir: &Path) {
    println!(
        "\nNimbus dev is running; state lives in {data}.\n\
         Deploy and invoke a function:\n  \
         nimbus fn deploy examples/python-hello --name hello --runtime python3.12 --handler app.handler\n  \
         nimbus invoke hello --payload '{{\"name\":\"Nimbus\"}}'\n  \
         nimbus invoke hello --type Event --payload '{{\"name\":\"later\"}}'\n\
         Or with the aws CLI:\n  \
         aws lambda invoke --endpoint-url http://{address} --function-name hello \
         --cli-binary-format raw-in-base64-out --payload '{{\"name\":\"Nimbus\"}}' out.json\n",
        data = data_dir.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("postgres://app:hunter2@db:5432/nimbus"),
            "postgres://app:***@db:5432/nimbus"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redacted("postgres://app@db/x"), "postgres://app@db/x");
    }
}
