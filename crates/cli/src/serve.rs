//! Runs the services: all in one process (`nimbus dev`) or one per process (`nimbus gateway`,
//! `nimbus invoker`). Each announces `nimbus: <service> listening on <address>` on stdout once
//! it accepts connections, and drains on the shutdown token.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use nimbus_core::Invoker;
use nimbus_gateway::{AppState, GatewayConfig};
use nimbus_invoker::{InvokerConfig, LocalInvoker};
use nimbus_store::{RecordWriter, RecordWriterConfig, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::{DevArgs, GatewayArgs, GatewayLimits, InstanceArgs, InvokerArgs};

pub async fn dev(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => embedded_database_url(&args.data_dir)?,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let platform = InProcessPlatform::start(
        &database_url,
        invoker_config(&args.data_dir, &args.gateway.region, &args.instances),
        &args.gateway,
    )
    .await?;
    let address = listener.local_addr()?;
    announce("dev", &format!("http://{address}"));
    print_dev_help(address, &args.data_dir);
    platform.serve(listener, shutdown).await
}

pub async fn gateway(args: GatewayArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = connect_store(&args.database_url).await?;
    let invoker: Arc<dyn Invoker> = Arc::new(
        nimbus_invoker::grpc::RemoteInvoker::connect(&args.invoker_url)
            .await
            .with_context(|| format!("invalid invoker URL {}", args.invoker_url))?,
    );
    let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    announce("gateway", &format!("http://{}", listener.local_addr()?));
    let router = nimbus_gateway::router(AppState::new(
        cached(store, &args.limits),
        invoker,
        records.clone(),
        gateway_config(&args.limits),
    ));
    let served = nimbus_gateway::serve(listener, router, shutdown.cancelled_owned()).await;
    records.shutdown().await;
    served.context("the gateway failed")
}

pub async fn invoker(args: InvokerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = connect_store(&args.database_url).await?;
    let invoker = LocalInvoker::start(
        invoker_config(&args.data_dir, &args.region, &args.instances),
        store,
    )
    .await
    .context("cannot start the invoker")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    announce("invoker", &listener.local_addr()?.to_string());
    let served = nimbus_invoker::grpc::serve(
        listener,
        invoker.clone() as Arc<dyn Invoker>,
        shutdown.cancelled_owned(),
    )
    .await;
    invoker.shutdown().await;
    served.context("the invoker's gRPC server failed")
}

/// The gateway and the invoker in one process, sharing a store: `nimbus dev` and the
/// benchmark.
pub struct InProcessPlatform {
    invoker: Arc<LocalInvoker>,
    records: RecordWriter,
    router: axum::Router,
}

impl InProcessPlatform {
    pub async fn start(
        database_url: &str,
        invoker_config: InvokerConfig,
        limits: &GatewayLimits,
    ) -> anyhow::Result<Self> {
        let store = connect_store(database_url).await?;
        let invoker = LocalInvoker::start(invoker_config, store.clone())
            .await
            .context("cannot start the invoker")?;
        let records = RecordWriter::start(store.clone(), RecordWriterConfig::default());
        let router = nimbus_gateway::router(AppState::new(
            cached(store, limits),
            invoker.clone() as Arc<dyn Invoker>,
            records.clone(),
            gateway_config(limits),
        ));
        Ok(Self {
            invoker,
            records,
            router,
        })
    }

    /// Serves the HTTP API until `shutdown`, then stops instances and flushes records.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let served = nimbus_gateway::serve(listener, self.router, shutdown.cancelled_owned()).await;
        self.invoker.shutdown().await;
        self.records.shutdown().await;
        served.context("the gateway failed")
    }
}

/// The gateway reads function configurations through a short-lived cache.
fn cached(store: Arc<dyn Store>, limits: &GatewayLimits) -> Arc<dyn Store> {
    Arc::new(nimbus_store::CachedStore::new(
        store,
        limits.function_cache_ttl,
    ))
}

async fn connect_store(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    nimbus_store::connect(url)
        .await
        .with_context(|| format!("cannot open the store at {url}"))
}

fn embedded_database_url(data_dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("nimbus.db");
    Ok(format!("sqlite://{}", path.display()))
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
    }
}

fn gateway_config(limits: &GatewayLimits) -> GatewayConfig {
    GatewayConfig {
        max_sync_payload_bytes: limits.max_sync_payload,
        region: limits.region.clone(),
        ..GatewayConfig::default()
    }
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
         nimbus invoke hello --payload '{{\"name\":\"Nimbus\"}}'\n\
         Or with the aws CLI:\n  \
         aws lambda invoke --endpoint-url http://{address} --function-name hello \
         --cli-binary-format raw-in-base64-out --payload '{{\"name\":\"Nimbus\"}}' out.json\n",
        data = data_dir.display(),
    );
}
