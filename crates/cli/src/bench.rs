//! `nimbus bench`: invoke performance next to baselines measured in the same run with the
//! same client, so the ratios mean something on any machine.
//!
//! - Sync: latency and throughput of `RequestResponse` invokes against a loopback HTTP echo.
//! - HTTP route: the same function behind a synchronous route, against the Invoke API.
//! - Async: `202`s per second at the gateway against raw Redis `XADD`s per second, then
//!   events per second drained end to end (queue-worker, invoker, records written) against
//!   the sync throughput.
//!
//! The platform runs in this process (a SQLite store in a temporary folder unless
//! `--database-url` says otherwise, the event queue on Redis); a no-op function is deployed
//! and warmed so every measured invoke hits a warm instance.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::routing::post;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use nimbus_core::{FunctionName, RequestId};
use nimbus_queue::QueuedEvent;
use nimbus_queue_worker::WorkerConfig;

use crate::args::{BacklogBound, BenchArgs, GatewayLimits, QueueArgs, TriggerArgs};
use crate::serve::{InProcessPlatform, gateway_config, invoker_config, redis_queue};

/// Goals from the foundation issue, on a 2-core machine with warm instances.
const GOAL_P50_RATIO_AT_ONE_CLIENT: f64 = 3.0;
/// Goals from the async issue.
const GOAL_ACCEPT_RATIO_TO_XADD: f64 = 0.3;
const GOAL_DRAIN_RATIO_TO_SYNC: f64 = 0.5;
const GOAL_THROUGHPUT_RATIO_AT_32_CLIENTS: f64 = 0.12;
/// Goal from the HTTP triggers issue, at the most clients measured.
const GOAL_ROUTE_RATIO_TO_INVOKE: f64 = 0.9;
/// Slices two measured targets take turns in (see [`LoadGenerator::alternating`]).
const ROUNDS: u32 = 4;

const NOOP_PYTHON: &str = "def handler(event, context):\n    return event\n";
const NOOP_NODE: &str = "exports.handler = async (event) => event;\n";

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let echo_url = start_echo(shutdown.clone()).await?;

    let data_dir = tempfile::tempdir().context("cannot create a temporary data folder")?;
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", data_dir.path().join("nimbus.db").display()),
    };
    let limits = GatewayLimits {
        max_sync_payload: nimbus_core::limits::MAX_SYNC_PAYLOAD_BYTES,
        max_async_payload: nimbus_core::limits::MAX_ASYNC_PAYLOAD_BYTES,
        region: "us-east-1".to_owned(),
        function_cache_ttl: nimbus_store::DEFAULT_FUNCTION_CACHE_TTL,
        account_concurrency: 1000,
        // The benchmark accepts events with the worker stopped, as many as it can.
        max_queue_backlog: BacklogBound(None),
        header_read_timeout: nimbus_gateway::DEFAULT_HEADER_READ_TIMEOUT,
        body_read_timeout: nimbus_gateway::DEFAULT_BODY_READ_TIMEOUT,
    };
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let redis = BenchRedis::new(&args.redis_url);
    let queue = redis_queue(
        &args.redis_url,
        &QueueArgs {
            redis_key_prefix: redis.prefix.clone(),
            visibility_timeout: Duration::from_secs(60),
        },
    )
    .await?;
    let platform = InProcessPlatform::start(
        &database_url,
        queue,
        invoker_config(data_dir.path(), &limits.region, &args.instances),
        // The benchmark's own loopback platform: nobody else calls it, so no keys.
        gateway_config(&limits, &TriggerArgs::default(), Vec::new())?,
        limits.function_cache_ttl,
        // As many events at once as the sync clients, so both use the same warm instances.
        WorkerConfig {
            max_inflight: max_clients,
            ..WorkerConfig::default()
        },
    )
    .await?;
    let worker = platform.worker();
    let records = platform.records();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let serving = tokio::spawn(platform.serve_api(listener, shutdown.clone()));

    deploy_noop(&reqwest::Client::new(), &endpoint, &args.runtime).await?;
    let load = LoadGenerator::start()?;
    let invoke_url = format!("{endpoint}/2015-03-31/functions/noop/invocations");
    // Warm one instance per client, then let the measured runs find them ready.
    load.measure(&invoke_url, None, max_clients, Duration::from_secs(1))
        .await?;
    load.measure(&echo_url, None, max_clients, Duration::from_millis(500))
        .await?;

    println!(
        "nimbus bench: sync invoke of a no-op {} function vs a loopback HTTP echo, {} per run",
        args.runtime,
        humantime::format_duration(args.duration)
    );
    println!(
        "{:>7}  {:>10} {:>10} {:>10}  {:>10} {:>10} {:>10}  {:>9} {:>9}",
        "clients",
        "echo p50",
        "echo p99",
        "echo rps",
        "inv p50",
        "inv p99",
        "inv rps",
        "p50 x",
        "rps x"
    );
    let mut goals_met = true;
    let mut sync_per_second = 0.0;
    for &clients in &args.clients {
        let (echo, invoke) = load
            .alternating(&echo_url, &invoke_url, clients, args.duration)
            .await?;
        if clients == max_clients {
            sync_per_second = invoke.per_second;
        }
        let p50_ratio = invoke.p50.as_secs_f64() / echo.p50.as_secs_f64();
        let rps_ratio = invoke.per_second / echo.per_second;
        println!(
            "{clients:>7}  {:>10} {:>10} {:>10.0}  {:>10} {:>10} {:>10.0}  {p50_ratio:>8.2}x {rps_ratio:>8.3}x",
            micros(echo.p50),
            micros(echo.p99),
            echo.per_second,
            micros(invoke.p50),
            micros(invoke.p99),
            invoke.per_second,
        );
        if clients == 1 && p50_ratio > GOAL_P50_RATIO_AT_ONE_CLIENT {
            println!(
                "  goal missed: p50 at 1 client should be at most {GOAL_P50_RATIO_AT_ONE_CLIENT}x the echo's"
            );
            goals_met = false;
        }
        if clients == 32 && rps_ratio < GOAL_THROUGHPUT_RATIO_AT_32_CLIENTS {
            println!(
                "  goal missed: throughput at 32 clients should be at least {GOAL_THROUGHPUT_RATIO_AT_32_CLIENTS}x the echo's"
            );
            goals_met = false;
        }
    }

    // HTTP route: the same function behind `POST /api/noop`, against the Invoke API.
    add_noop_route(&reqwest::Client::new(), &endpoint).await?;
    let route_url = format!("{endpoint}{}/noop", nimbus_gateway::DEFAULT_ROUTES_PREFIX);
    println!("\nnimbus bench: sync HTTP route (POST /noop) vs the Invoke API, same function");
    println!(
        "{:>7}  {:>10} {:>10}  {:>10} {:>10}  {:>9}",
        "clients", "inv p50", "inv rps", "route p50", "route rps", "rps x"
    );
    for &clients in &args.clients {
        let (invoke, route) = load
            .alternating(&invoke_url, &route_url, clients, args.duration)
            .await?;
        let ratio = route.per_second / invoke.per_second;
        println!(
            "{clients:>7}  {:>10} {:>10.0}  {:>10} {:>10.0}  {ratio:>8.3}x",
            micros(invoke.p50),
            invoke.per_second,
            micros(route.p50),
            route.per_second,
        );
        if clients == max_clients && ratio < GOAL_ROUTE_RATIO_TO_INVOKE {
            println!(
                "  goal missed: route requests per second should be at least {GOAL_ROUTE_RATIO_TO_INVOKE}x the Invoke API's"
            );
            goals_met = false;
        }
    }

    // Async: accept with the worker stopped, so the gateway has the machine to itself, then
    // drain what was accepted.
    let xadd = load
        .measure_xadd(&redis, max_clients, args.duration)
        .await?;
    let accept = load
        .measure(&invoke_url, Some(EVENT), max_clients, args.duration)
        .await?;
    let written_before = records.stats().records_written;
    let drain_started = Instant::now();
    let stop_worker = CancellationToken::new();
    let draining = tokio::spawn({
        let (worker, stop) = (worker.clone(), stop_worker.clone());
        async move { worker.run(stop).await }
    });
    let accepted = accept.count as u64;
    while worker.stats().succeeded < accepted {
        if drain_started.elapsed() > Duration::from_secs(600) {
            bail!(
                "{} of {accepted} events drained in 10 minutes",
                worker.stats().succeeded
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained_in = drain_started.elapsed();
    stop_worker.cancel();
    draining.await?;
    let drain_per_second = accepted as f64 / drained_in.as_secs_f64();
    let accept_ratio = accept.per_second / xadd.per_second;
    let drain_ratio = drain_per_second / sync_per_second;
    println!(
        "\nnimbus bench: async invoke of the same function, {max_clients} clients; {accepted} events"
    );
    println!(
        "{:>10} {:>10} {:>10} {:>9}   {:>10} {:>10} {:>9}",
        "XADD/s", "202/s", "202 p99", "202/XADD", "drained/s", "sync rps", "drain/sync"
    );
    println!(
        "{:>10.0} {:>10.0} {:>10} {accept_ratio:>8.3}x   {drain_per_second:>10.0} {sync_per_second:>10.0} {drain_ratio:>9.3}x",
        xadd.per_second,
        accept.per_second,
        micros(accept.p99),
    );
    let stats = worker.stats();
    println!(
        "  worker: {} succeeded, {} retried, {} redelivered; records written meanwhile: {}",
        stats.succeeded,
        stats.retried,
        stats.redelivered,
        records.stats().records_written - written_before
    );
    if accept_ratio < GOAL_ACCEPT_RATIO_TO_XADD {
        println!(
            "  goal missed: 202s per second should be at least {GOAL_ACCEPT_RATIO_TO_XADD}x raw XADDs"
        );
        goals_met = false;
    }
    if drain_ratio < GOAL_DRAIN_RATIO_TO_SYNC {
        println!(
            "  goal missed: events drained per second should be at least {GOAL_DRAIN_RATIO_TO_SYNC}x the sync throughput"
        );
        goals_met = false;
    }
    println!(
        "goals (1 client: p50 <= {GOAL_P50_RATIO_AT_ONE_CLIENT}x echo; 32 clients: rps >= {GOAL_THROUGHPUT_RATIO_AT_32_CLIENTS}x echo; \
         route rps >= {GOAL_ROUTE_RATIO_TO_INVOKE}x invoke rps; 202/s >= {GOAL_ACCEPT_RATIO_TO_XADD}x XADD/s; \
         drained/s >= {GOAL_DRAIN_RATIO_TO_SYNC}x sync rps): {}",
        if goals_met { "met" } else { "missed" }
    );

    shutdown.cancel();
    serving.await??;
    Ok(())
}

const EVENT: (&str, &str) = ("x-amz-invocation-type", "Event");

/// Redis keys of this run: the platform's queue under `prefix`, and the stream the raw
/// `XADD`s go to. Deleted on drop.
struct BenchRedis {
    url: String,
    prefix: String,
    xadd_key: String,
}

impl BenchRedis {
    fn new(url: &str) -> Self {
        let prefix = format!("nimbus-bench-{}", RequestId::new());
        Self {
            url: url.to_owned(),
            xadd_key: format!("{prefix}:xadd"),
            prefix,
        }
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        let keys = [
            format!("{}:events", self.prefix),
            format!("{}:delayed", self.prefix),
            self.xadd_key.clone(),
        ];
        let deleted = redis::Client::open(self.url.as_str())
            .and_then(|client| client.get_connection())
            .and_then(|mut conn| redis::cmd("DEL").arg(&keys).query::<u64>(&mut conn));
        if let Err(error) = deleted {
            eprintln!("nimbus bench: could not delete the Redis keys {keys:?}: {error}");
        }
    }
}

async fn start_echo(shutdown: CancellationToken) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    let app = axum::Router::new().route("/", post(|body: Bytes| async move { body }));
    // The same socket settings as the gateway, so only the work differs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the echo server failed");
        }
    });
    Ok(url)
}

/// `POST /noop` → the no-op function, synchronously.
async fn add_noop_route(client: &reqwest::Client, endpoint: &str) -> anyhow::Result<()> {
    let response = client
        .post(format!("{endpoint}/nimbus/v1/routes"))
        .json(&json!({"method": "POST", "path": "/noop", "functionName": "noop"}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "cannot add the benchmark's route: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn deploy_noop(
    client: &reqwest::Client,
    endpoint: &str,
    runtime: &str,
) -> anyhow::Result<()> {
    let zip = if runtime.starts_with("provided") {
        // The Rust example (lambda_runtime crate), built next to this binary.
        let bootstrap = std::env::current_exe()?.with_file_name("bootstrap");
        let binary = std::fs::read(&bootstrap).with_context(|| {
            format!(
                "{} is missing: build it with `cargo build --release -p nimbus-example-rust-hello`",
                bootstrap.display()
            )
        })?;
        zip_one("bootstrap", &binary, 0o755)?
    } else if runtime.starts_with("nodejs") {
        zip_one("index.js", NOOP_NODE.as_bytes(), 0o644)?
    } else {
        zip_one("app.py", NOOP_PYTHON.as_bytes(), 0o644)?
    };
    let handler = if runtime.starts_with("nodejs") {
        "index.handler"
    } else {
        "app.handler"
    };
    let response = client
        .post(format!("{endpoint}/2015-03-31/functions"))
        .json(&json!({
            "FunctionName": "noop",
            "Runtime": runtime,
            "Handler": handler,
            "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
        }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!(
            "cannot deploy the no-op function: {}",
            response.text().await?
        );
    }
    Ok(())
}

pub fn zip_one(name: &str, contents: &[u8], mode: u32) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(mode);
    writer.start_file(name, options)?;
    writer.write_all(contents)?;
    Ok(writer.finish()?.into_inner())
}

/// Sends the requests from a tokio runtime of its own, as a separate client process would, so
/// the echo and the gateway both pay the same hop to reach their caller (an echo sharing its
/// caller's runtime would be served without ever crossing a thread).
struct LoadGenerator {
    runtime: Option<tokio::runtime::Runtime>,
    client: reqwest::Client,
}

impl LoadGenerator {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-client")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            client,
        })
    }

    async fn measure(
        &self,
        url: &str,
        header: Option<(&'static str, &'static str)>,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Measurement> {
        let client = self.client.clone();
        let url = url.to_owned();
        self.run(async move { measure(&client, &url, header, clients, duration).await })
            .await
    }

    /// `first` and `second` measured in turns, [`ROUNDS`] slices each that add up to
    /// `duration`; each one's mean over its slices. Taking turns, both see the same machine:
    /// a VM's speed drifts within a run (a noisy neighbour; idle CPUs that halt between
    /// requests in one minute and stay awake in the next), and one measured after the other
    /// could compare two different machines.
    async fn alternating(
        &self,
        first: &str,
        second: &str,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<(Measurement, Measurement)> {
        let slice = duration / ROUNDS;
        let (mut firsts, mut seconds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            firsts.push(self.measure(first, None, clients, slice).await?);
            seconds.push(self.measure(second, None, clients, slice).await?);
        }
        Ok((Measurement::mean(&firsts), Measurement::mean(&seconds)))
    }

    /// `clients` tasks each `XADD` an event like the gateway's, back to back, each on a
    /// connection of its own: the same shape as the HTTP clients, one request in flight per
    /// connection. (One multiplexed connection would pipeline the clients' commands into
    /// batches, a rate no HTTP server answering one request at a time per client can near.)
    async fn measure_xadd(
        &self,
        redis: &BenchRedis,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Measurement> {
        let client = redis::Client::open(redis.url.as_str())?;
        let key = redis.xadd_key.clone();
        let event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("noop")?,
            "$LATEST",
            Bytes::from_static(br#"{"ping":1}"#),
        );
        let body = serde_json::to_vec(&event)?;
        self.run(async move {
            let mut connections = Vec::with_capacity(clients);
            for _ in 0..clients {
                connections.push(client.get_multiplexed_async_connection().await?);
            }
            let connections = Arc::new(connections);
            timed(clients, duration, move |task| {
                let mut conn = connections[task].clone();
                let (key, body) = (key.clone(), body.clone());
                async move {
                    redis::cmd("XADD")
                        .arg(&key)
                        .arg("*")
                        .arg("e")
                        .arg(&body)
                        .query_async::<String>(&mut conn)
                        .await?;
                    Ok(())
                }
            })
            .await
        })
        .await
    }

    /// Runs `work` on the generator's own runtime and worker thread.
    async fn run<F>(&self, work: F) -> anyhow::Result<Measurement>
    where
        F: Future<Output = anyhow::Result<Measurement>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            bail!("the load generator has stopped");
        };
        let handle = runtime.handle().clone();
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                // Spawned, so the clients run on the generator's worker, not this thread.
                tokio::spawn(work).await?
            })
        })
        .await?
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Measurement {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    count: usize,
}

impl Measurement {
    /// Slices of one run taken together: their mean rate and mean percentiles.
    fn mean(slices: &[Measurement]) -> Measurement {
        let n = slices.len().max(1);
        let mean_of = |pick: fn(&Measurement) -> Duration| {
            slices.iter().map(pick).sum::<Duration>() / u32::try_from(n).unwrap_or(u32::MAX)
        };
        Measurement {
            p50: mean_of(|m| m.p50),
            p99: mean_of(|m| m.p99),
            per_second: slices.iter().map(|m| m.per_second).sum::<f64>() / n as f64,
            count: slices.iter().map(|m| m.count).sum(),
        }
    }
}

/// `clients` tasks each send `{"ping":1}` back to back for `duration`, with `header` if
/// given.
async fn measure(
    client: &reqwest::Client,
    url: &str,
    header: Option<(&'static str, &'static str)>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Measurement> {
    let url: Arc<str> = Arc::from(url);
    let client = client.clone();
    timed(clients, duration, move |_task| {
        let mut request = client.post(&*url).body(r#"{"ping":1}"#);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let url = url.clone();
        async move {
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            if !status.is_success() {
                bail!("{url} answered {status}");
            }
            Ok(())
        }
    })
    .await
}

/// `clients` tasks each run `operation` back to back for `duration`; its latencies and rate.
async fn timed<F, Fut>(
    clients: usize,
    duration: Duration,
    operation: F,
) -> anyhow::Result<Measurement>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for task in 0..clients {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                operation(task).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    if latencies.is_empty() {
        bail!("nothing completed in {duration:?}");
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(Measurement {
        p50: at(0.50),
        p99: at(0.99),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        count: latencies.len(),
    })
}

fn micros(d: Duration) -> String {
    format!("{:.0}µs", d.as_secs_f64() * 1e6)
}
