//! The short chaos run CI does: `nimbus chaos` with a small number of events and every kind
//! of fault at least once (queue-worker, invoker and DLQ service SIGKILLed and restarted,
//! Redis crashed and restarted, the Postgres connections terminated). Needs `redis-server`
//! on PATH and Postgres (`NIMBUS_TEST_DATABASE_URL`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const NIMBUS: &str = env!("CARGO_BIN_EXE_nimbus");

#[test]
fn every_accepted_event_ends_once_through_crashes_of_every_kind() {
    let database = std::env::var("NIMBUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let output = Command::new(NIMBUS)
        .args([
            "chaos",
            "--events",
            "200",
            "--rate",
            "20",
            "--worker-kills",
            "2",
            "--invoker-kills",
            "1",
            "--dlq-kills",
            "1",
            "--redis-restarts",
            "1",
            "--postgres-drops",
            "1",
            "--drain-deadline",
            "90s",
            "--database-url",
            &database,
        ])
        .output()
        .expect("run nimbus chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: Value = stdout
        .lines()
        .find_map(|line| line.strip_prefix("nimbus: chaos summary "))
        .map(|json| serde_json::from_str(json).unwrap())
        .unwrap_or_else(|| panic!("no summary:\n{stdout}\n{stderr}"));
    assert!(
        output.status.success(),
        "nimbus chaos failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(summary["lost"], 0, "{stdout}");
    assert_eq!(summary["two_terminal_states"], 0, "{stdout}");
    assert_eq!(summary["dead_lettered_without_letter"], 0, "{stdout}");
    let accepted = summary["accepted"].as_u64().unwrap();
    assert!(accepted > 0, "nothing was accepted:\n{stdout}");
    let ended = ["succeeded", "dead_lettered", "failed"]
        .iter()
        .map(|key| summary[key].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(ended, accepted, "{stdout}");
    for fault in [
        "worker_kills",
        "invoker_kills",
        "dlq_kills",
        "redis_restarts",
        "postgres_drops",
    ] {
        assert!(
            summary["faults"][fault].as_u64().unwrap_or(0) >= 1,
            "{fault} did not happen:\n{stdout}"
        );
    }
    // Every attempt that ran was logged by the function, and a retried event ran more than
    // once: the run really exercised failures.
    assert!(
        summary["executions"].as_u64().unwrap() > accepted,
        "{stdout}"
    );
}
