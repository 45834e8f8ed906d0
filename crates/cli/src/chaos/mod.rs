//! `nimbus chaos`: the reliability test of the distributed topology. It starts a gateway,
//! an invoker, a DLQ service and two queue-workers as real processes on a Postgres database
//! and a Redis of the run's own, sends a bounded number of `Event` invokes to a function
//! that fails a fraction of its attempts, and meanwhile SIGKILLs and restarts services,
//! crashes Redis and drops the Postgres connections. Then it checks that every accepted
//! event reached exactly one terminal state, and prints the counts.

mod checker;
mod database;
mod faults;
mod function;
mod redis_server;
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nimbus_core::RequestId;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::ChaosArgs;
use checker::Verdict;
use database::ChaosDatabase;
use faults::{FaultCounts, Inflicted};
use redis_server::PrivateRedis;
use topology::{Backends, Topology, Tuning};

/// Queue-workers in the topology.
const WORKERS: usize = 2;
/// Invokes in flight at once at most, whatever the rate.
const MAX_SENDS_IN_FLIGHT: usize = 64;
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!("--fail-rate must be between 0 and 1");
    }
    if args.rate <= 0.0 || !args.rate.is_finite() || args.events == 0 {
        bail!("--events and --rate must be positive");
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let logs = tempfile::Builder::new()
        .prefix("nimbus-chaos-")
        .tempdir()
        .context("cannot create a folder for the logs")?;
    let database = ChaosDatabase::create(&args.database_url).await?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // Interrupted, the run is dropped: every process it started is SIGKILLed with it.
    let outcome = tokio::select! {
        outcome = run_on(&args, seed, &database, logs.path()) => outcome,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    if let Err(error) = database.drop_database().await {
        eprintln!("nimbus chaos: {error:#}");
    }
    let clean = outcome.as_ref().is_ok_and(Verdict::is_clean);
    if args.keep_logs || !clean {
        let kept = logs.keep();
        eprintln!("nimbus chaos: the services' logs are in {}", kept.display());
    }
    let verdict = outcome?;
    if !clean {
        bail!(
            "{} events lost, {} in two terminal states, {} dead-lettered without a letter",
            verdict.lost,
            verdict.two_terminal_states,
            verdict.dead_lettered_without_letter
        );
    }
    Ok(())
}

async fn run_on(
    args: &ChaosArgs,
    seed: u64,
    database: &ChaosDatabase,
    logs: &Path,
) -> anyhow::Result<Verdict> {
    let mut redis = PrivateRedis::start(args.redis_server.clone(), &args.redis_fsync).await?;
    let backends = Backends {
        database_url: database.url.clone(),
        redis_url: redis.url(),
    };
    let tuning = Tuning {
        max_inflight: args.max_inflight,
    };
    let mut topology = Topology::start(&backends, &tuning, WORKERS, logs).await?;
    let http = reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?;
    let execution_log = shared_log(logs)?;
    function::deploy(&http, &topology.endpoint, &execution_log, args.fail_rate).await?;

    let counts = FaultCounts {
        worker_kills: args.worker_kills,
        invoker_kills: args.invoker_kills,
        dlq_kills: args.dlq_kills,
        gateway_kills: args.gateway_kills,
        redis_restarts: args.redis_restarts,
        postgres_drops: args.postgres_drops,
    };
    let window = Duration::from_secs_f64(args.events as f64 / args.rate);
    let planned = faults::schedule(counts, topology.workers(), window, seed);
    println!(
        "nimbus chaos: {} events at {}/s to a python3.12 function failing {:.0}% of attempts \
         (2 retries); seed {seed}",
        args.events,
        args.rate,
        args.fail_rate * 100.0
    );
    println!(
        "  gateway, invoker, dlq and {WORKERS} queue-workers on Postgres (database {}) and a \
         private Redis (appendonly yes, appendfsync {})",
        database.name(),
        args.redis_fsync
    );
    let invoke_url = format!(
        "{}/2015-03-31/functions/{}/invocations",
        topology.endpoint,
        function::NAME
    );
    let start = Instant::now();
    let (sent, inflicted) = tokio::join!(
        send_events(&http, &invoke_url, args.events, args.rate),
        faults::inflict(&planned, start, &mut topology, &mut redis, database),
    );
    let inflicted = inflicted.context("a service did not come back after a fault")?;
    let sent = sent?;
    print_faults(&inflicted);

    let store = nimbus_store::connect(&database.url)
        .await
        .context("cannot open the store to check the records")?;
    let drained = checker::wait_for_drain(&store, &sent.accepted, args.drain_deadline)
        .await
        .map(|_| sent.finished.elapsed());
    let verdict = checker::check(&store, &sent.accepted, &execution_log).await?;
    topology.stop().await;
    redis.stop().await;
    print_summary(&sent, &verdict, drained, args.drain_deadline, &inflicted);
    Ok(verdict)
}

/// What the sender saw.
struct Sent {
    accepted: Vec<RequestId>,
    /// Sends not answered `202`, by what they got instead.
    refused: BTreeMap<String, usize>,
    /// When the last send was answered.
    finished: Instant,
}

/// Sends `events` `Event` invokes, `rate` per second.
async fn send_events(
    http: &reqwest::Client,
    url: &str,
    events: usize,
    rate: f64,
) -> anyhow::Result<Sent> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let in_flight = Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT));
    let mut sends = JoinSet::new();
    for n in 0..events {
        ticks.tick().await;
        let permit = in_flight.clone().acquire_owned().await?;
        let request = http
            .post(url)
            .header("X-Amz-Invocation-Type", "Event")
            .body(json!({ "n": n }).to_string());
        sends.spawn(async move {
            let answer = send_event(request).await;
            drop(permit);
            answer
        });
    }
    let mut sent = Sent {
        accepted: Vec::with_capacity(events),
        refused: BTreeMap::new(),
        finished: Instant::now(),
    };
    while let Some(answer) = sends.join_next().await {
        match answer? {
            Ok(id) => sent.accepted.push(id),
            Err(refusal) => *sent.refused.entry(refusal).or_default() += 1,
        }
    }
    sent.finished = Instant::now();
    Ok(sent)
}

/// The request id of an accepted event, or why it was not accepted.
async fn send_event(request: reqwest::RequestBuilder) -> Result<RequestId, String> {
    let response = request.send().await.map_err(|error| {
        if error.is_timeout() {
            "timed out".to_owned()
        } else {
            "connection failed".to_owned()
        }
    })?;
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-amzn-RequestId")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| RequestId::parse(value).ok());
    match (status.as_u16(), request_id) {
        (202, Some(id)) => Ok(id),
        (202, None) => Err("202 without a request id".to_owned()),
        (code, _) => {
            let error_type = response
                .headers()
                .get("x-amzn-ErrorType")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned();
            Err(format!("{code} {error_type}").trim().to_owned())
        }
    }
}

fn print_faults(inflicted: &[Inflicted]) {
    println!("faults:");
    for fault in inflicted {
        println!(
            "  t+{:>6.1}s  {:<24} {}",
            fault.at.as_secs_f64(),
            fault.fault.to_string(),
            fault.detail
        );
    }
}

fn print_summary(
    sent: &Sent,
    verdict: &Verdict,
    drained: Option<Duration>,
    deadline: Duration,
    inflicted: &[Inflicted],
) {
    let refused: usize = sent.refused.values().sum();
    let refusals = sent
        .refused
        .iter()
        .map(|(why, n)| format!("{n} {why}"))
        .collect::<Vec<_>>()
        .join(", ");
    let drain = match drained {
        Some(took) => format!("{:.1}s", took.as_secs_f64()),
        None => format!(
            "not drained within {}",
            humantime::format_duration(deadline)
        ),
    };
    let row = |name: &str, value: String| println!("  {name:<24}{value:>10}");
    println!("summary:");
    row("accepted", sent.accepted.len().to_string());
    if refused > 0 {
        println!("  {:<24}{refused:>10}  ({refusals})", "refused (not 202)");
    } else {
        row("refused (not 202)", "0".to_owned());
    }
    row("succeeded", verdict.succeeded.to_string());
    row("dead-lettered", verdict.dead_lettered.to_string());
    row("failed", verdict.failed.to_string());
    row("lost", verdict.lost.to_string());
    row(
        "in two terminal states",
        verdict.two_terminal_states.to_string(),
    );
    if verdict.dead_lettered_without_letter > 0 {
        row(
            "dead-lettered, no letter",
            verdict.dead_lettered_without_letter.to_string(),
        );
    }
    println!(
        "  {:<24}{:>10}  (of {} executions)",
        "duplicate executions", verdict.duplicate_executions, verdict.executions
    );
    row("time to drain", drain);
    for example in &verdict.lost_examples {
        println!("  lost: {example}");
    }
    println!(
        "result: {}",
        if verdict.is_clean() {
            "every accepted event reached exactly one terminal state"
        } else {
            "FAILED"
        }
    );
    let faults: BTreeMap<String, usize> =
        inflicted.iter().fold(BTreeMap::new(), |mut counts, fault| {
            let kind = match fault.fault {
                faults::Fault::Kill(topology::Target::Worker(_)) => "worker_kills",
                faults::Fault::Kill(topology::Target::Invoker) => "invoker_kills",
                faults::Fault::Kill(topology::Target::Dlq) => "dlq_kills",
                faults::Fault::Kill(topology::Target::Gateway) => "gateway_kills",
                faults::Fault::CrashRedis => "redis_restarts",
                faults::Fault::DropPostgresConnections => "postgres_drops",
            };
            *counts.entry(kind.to_owned()).or_default() += 1;
            counts
        });
    // One line for scripts and tests.
    println!(
        "nimbus: chaos summary {}",
        json!({
            "accepted": sent.accepted.len(),
            "refused": refused,
            "succeeded": verdict.succeeded,
            "dead_lettered": verdict.dead_lettered,
            "failed": verdict.failed,
            "lost": verdict.lost,
            "two_terminal_states": verdict.two_terminal_states,
            "dead_lettered_without_letter": verdict.dead_lettered_without_letter,
            "executions": verdict.executions,
            "duplicate_executions": verdict.duplicate_executions,
            "drain_seconds": drained.map(|d| d.as_secs_f64()),
            "faults": faults,
        })
    );
}

/// The execution log, which every instance appends to: as root the invoker runs each
/// instance as a user of its own, so the log is writable by all and its folder passable
/// (not listable) by all.
fn shared_log(logs: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = logs.join("executions.log");
    std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    std::fs::set_permissions(logs, std::fs::Permissions::from_mode(0o711))?;
    Ok(path)
}
