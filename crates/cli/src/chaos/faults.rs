//! The fault schedule: which service is crashed when, drawn from a seed so a run can be
//! repeated, and the faults themselves (SIGKILL and restart a service, crash and restart
//! Redis, terminate the Postgres connections). Faults strike one at a time; each service
//! is back and ready before the next fault.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::database::ChaosDatabase;
use super::redis_server::PrivateRedis;
use super::topology::{Target, Topology};

/// Longest time a crashed process stays down before it is started again.
const MAX_DOWN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Kill(Target),
    CrashRedis,
    DropPostgresConnections,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(Target::Worker(n)) => write!(f, "SIGKILL queue-worker-{}", n + 1),
            Self::Kill(Target::Invoker) => write!(f, "SIGKILL invoker"),
            Self::Kill(Target::Dlq) => write!(f, "SIGKILL dlq"),
            Self::Kill(Target::Gateway) => write!(f, "SIGKILL gateway"),
            Self::CrashRedis => write!(f, "SIGKILL redis-server"),
            Self::DropPostgresConnections => write!(f, "pg_terminate_backend"),
        }
    }
}

/// How many of each fault a run inflicts.
#[derive(Debug, Clone, Copy)]
pub struct FaultCounts {
    pub worker_kills: usize,
    pub invoker_kills: usize,
    pub dlq_kills: usize,
    pub gateway_kills: usize,
    pub redis_restarts: usize,
    pub postgres_drops: usize,
}

/// One fault at its moment, and how long the crashed process stays down.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at: Duration,
    pub fault: Fault,
    pub down: Duration,
}

/// Spreads the faults at random moments over `window` (avoiding its first and last
/// twentieth, so events are in flight at each), in time order.
pub fn schedule(counts: FaultCounts, workers: usize, window: Duration, seed: u64) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut faults = Vec::new();
    for _ in 0..counts.worker_kills {
        faults.push(Fault::Kill(Target::Worker(rng.usize(0..workers.max(1)))));
    }
    faults.extend(std::iter::repeat_n(
        Fault::Kill(Target::Invoker),
        counts.invoker_kills,
    ));
    faults.extend(std::iter::repeat_n(
        Fault::Kill(Target::Dlq),
        counts.dlq_kills,
    ));
    faults.extend(std::iter::repeat_n(
        Fault::Kill(Target::Gateway),
        counts.gateway_kills,
    ));
    faults.extend(std::iter::repeat_n(
        Fault::CrashRedis,
        counts.redis_restarts,
    ));
    faults.extend(std::iter::repeat_n(
        Fault::DropPostgresConnections,
        counts.postgres_drops,
    ));
    let mut planned: Vec<Planned> = faults
        .into_iter()
        .map(|fault| Planned {
            at: window.mul_f64(0.05 + 0.9 * rng.f64()),
            fault,
            down: MAX_DOWN.mul_f64(rng.f64()),
        })
        .collect();
    planned.sort_by_key(|p| p.at);
    planned
}

/// What happened, for the report.
pub struct Inflicted {
    pub at: Duration,
    pub fault: Fault,
    pub detail: String,
}

/// Inflicts the planned faults, each at its moment from `start` (or as soon as the one
/// before is over), and brings the crashed service back before going on.
pub async fn inflict(
    planned: &[Planned],
    start: Instant,
    topology: &mut Topology,
    redis: &mut PrivateRedis,
    database: &ChaosDatabase,
) -> anyhow::Result<Vec<Inflicted>> {
    let mut done = Vec::with_capacity(planned.len());
    for plan in planned {
        tokio::time::sleep_until(start + plan.at).await;
        let at = start.elapsed();
        let detail = match plan.fault {
            Fault::Kill(target) => {
                topology.service(target)?.kill().await?;
                tokio::time::sleep(plan.down).await;
                let restarted = Instant::now();
                topology.restart(target).await?;
                format!(
                    "down {:.1}s, ready {:.1}s after restart",
                    plan.down.as_secs_f64(),
                    restarted.elapsed().as_secs_f64()
                )
            }
            Fault::CrashRedis => {
                let restarted = Instant::now();
                redis.crash_and_restart(plan.down).await?;
                format!(
                    "down {:.1}s, serving again {:.1}s after restart",
                    plan.down.as_secs_f64(),
                    (restarted.elapsed() - plan.down).as_secs_f64()
                )
            }
            Fault::DropPostgresConnections => {
                let terminated = database.terminate_connections().await?;
                format!("{terminated} connections terminated")
            }
        };
        tracing::info!(fault = %plan.fault, %detail, "fault inflicted");
        done.push(Inflicted {
            at,
            fault: plan.fault,
            detail,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_schedule_within_the_window() {
        let counts = FaultCounts {
            worker_kills: 4,
            invoker_kills: 2,
            dlq_kills: 2,
            gateway_kills: 0,
            redis_restarts: 1,
            postgres_drops: 1,
        };
        let window = Duration::from_secs(50);
        let first = schedule(counts, 2, window, 7);
        let again = schedule(counts, 2, window, 7);
        assert_eq!(first.len(), 10);
        assert!(
            first
                .iter()
                .zip(&again)
                .all(|(a, b)| a.at == b.at && a.fault == b.fault)
        );
        assert!(first.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(first.iter().all(|p| p.at < window && p.down <= MAX_DOWN));
        let redis = first
            .iter()
            .filter(|p| p.fault == Fault::CrashRedis)
            .count();
        assert_eq!(redis, 1);
    }
}
