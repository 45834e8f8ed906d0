//! The verdict: reads every accepted event's record and dead letter from the store, and the
//! function's execution log, and counts where each event ended. An event is lost when its
//! record is missing or not terminal once the drain deadline has passed.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use nimbus_core::{InvocationRecord, InvocationStatus, RequestId};
use nimbus_store::Store;
use tokio::time::Instant;

/// Where one event ended: its record, and the attempts of its dead letter if it has one.
type End = (RequestId, Option<InvocationRecord>, Option<usize>);

/// Store reads in flight at once while checking.
const READS_IN_FLIGHT: usize = 16;
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How the run ended, per accepted event.
#[derive(Debug, Default, Clone)]
pub struct Verdict {
    pub succeeded: usize,
    pub dead_lettered: usize,
    pub failed: usize,
    /// No record, or a record that is not terminal.
    pub lost: usize,
    /// A `succeeded` record for an event that also has a dead letter.
    pub two_terminal_states: usize,
    /// A `dead_lettered` record without its dead letter.
    pub dead_lettered_without_letter: usize,
    /// Times the function ran for an accepted event.
    pub executions: usize,
    /// Runs beyond the attempts the platform counted (a crash or an expired claim made an
    /// attempt run again).
    pub duplicate_executions: usize,
    /// A few lost events with their last status, to start debugging from.
    pub lost_examples: Vec<String>,
}

impl Verdict {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.two_terminal_states == 0 && self.dead_lettered_without_letter == 0
    }
}

/// Waits until every accepted event's record is terminal, or `deadline`. Returns how long
/// that took, or `None` if the deadline came first. A store error (its connections were
/// just terminated, say) is retried at the next poll.
pub async fn wait_for_drain(
    store: &Arc<dyn Store>,
    accepted: &[RequestId],
    deadline: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut waiting: Vec<RequestId> = accepted.to_vec();
    loop {
        let statuses: Vec<(RequestId, Option<bool>)> =
            futures::stream::iter(waiting.iter().copied())
                .map(|id| {
                    let store = store.clone();
                    async move {
                        let terminal = match store.get_invocation(&id).await {
                            Ok(record) => Some(record.is_some_and(|r| r.status.is_terminal())),
                            Err(error) => {
                                tracing::debug!(%error, "cannot read a record; polling again");
                                None
                            }
                        };
                        (id, terminal)
                    }
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .collect()
                .await;
        waiting = statuses
            .into_iter()
            .filter(|(_, terminal)| *terminal != Some(true))
            .map(|(id, _)| id)
            .collect();
        if waiting.is_empty() {
            return Some(started.elapsed());
        }
        if started.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Reads where each accepted event ended and how often its function ran.
pub async fn check(
    store: &Arc<dyn Store>,
    accepted: &[RequestId],
    execution_log: &Path,
) -> anyhow::Result<Verdict> {
    let executions = count_executions(execution_log)?;
    let accepted_set: HashSet<RequestId> = accepted.iter().copied().collect();
    let ends: Vec<anyhow::Result<End>> = futures::stream::iter(accepted.iter().copied())
        .map(|id| {
            let store = store.clone();
            async move {
                let record = store.get_invocation(&id).await?;
                let letter = store.get_dead_letter(&id).await?;
                Ok((id, record, letter.map(|l| l.attempts.len())))
            }
        })
        .buffer_unordered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut verdict = Verdict::default();
    for end in ends {
        let (id, record, letter_attempts) = end.context("cannot read the records")?;
        let ran = executions.get(&id).copied().unwrap_or(0);
        verdict.executions += ran;
        let Some(record) = record else {
            verdict.lost += 1;
            note(&mut verdict, id, "no record");
            continue;
        };
        let counted = record
            .attempt_history
            .len()
            .max(letter_attempts.unwrap_or(0));
        verdict.duplicate_executions += ran.saturating_sub(counted);
        match record.status {
            InvocationStatus::Succeeded => {
                verdict.succeeded += 1;
                if letter_attempts.is_some() {
                    verdict.two_terminal_states += 1;
                }
            }
            InvocationStatus::DeadLettered => {
                verdict.dead_lettered += 1;
                if letter_attempts.is_none() {
                    verdict.dead_lettered_without_letter += 1;
                }
            }
            InvocationStatus::Failed => verdict.failed += 1,
            status => {
                verdict.lost += 1;
                let letter = if letter_attempts.is_some() {
                    ", has a dead letter"
                } else {
                    ""
                };
                note(
                    &mut verdict,
                    id,
                    &format!(
                        "{} after {} attempts{letter}",
                        status.as_str(),
                        record.attempts
                    ),
                );
            }
        }
    }
    let strangers = executions
        .keys()
        .filter(|id| !accepted_set.contains(id))
        .count();
    if strangers > 0 {
        // Sends whose 202 never arrived (the connection broke) may still have been queued.
        tracing::info!(
            strangers,
            "executions of events whose acceptance the run did not see"
        );
    }
    Ok(verdict)
}

fn note(verdict: &mut Verdict, id: RequestId, what: &str) {
    if verdict.lost_examples.len() < 10 {
        verdict.lost_examples.push(format!("{id}: {what}"));
    }
}

/// Executions per request id, from the log the function appends to.
fn count_executions(path: &Path) -> anyhow::Result<HashMap<RequestId, usize>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut counts = HashMap::new();
    for line in text.lines() {
        match RequestId::parse(line.trim()) {
            Ok(id) => *counts.entry(id).or_default() += 1,
            Err(_) => tracing::warn!(line, "an unreadable line in the execution log"),
        }
    }
    Ok(counts)
}
