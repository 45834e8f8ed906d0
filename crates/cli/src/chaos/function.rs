//! The function under test: a python3 handler that appends its request id to a log file
//! (so the run can count executions) and then fails a given fraction of its attempts. It
//! is deployed through the gateway's Lambda API, with a short retry policy.

use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::json;

pub const NAME: &str = "chaos";

const HANDLER: &str = r#"import os, random

LOG = os.environ["CHAOS_LOG"]
FAIL_RATE = float(os.environ["CHAOS_FAIL_RATE"])

def handler(event, context):
    # One short O_APPEND write per execution: lines from concurrent instances never mix.
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (context.aws_request_id + "\n").encode())
    finally:
        os.close(fd)
    if random.random() < FAIL_RATE:
        raise RuntimeError("chaos: this attempt fails on purpose")
    return {"n": event.get("n")}
"#;

/// Creates the function and its event invoke config: two retries, an event age far beyond
/// the run's length, so every event ends by its retries alone.
pub async fn deploy(
    http: &reqwest::Client,
    endpoint: &str,
    log: &Path,
    fail_rate: f64,
) -> anyhow::Result<()> {
    let zip = crate::bench::zip_one("app.py", HANDLER.as_bytes(), 0o644)?;
    let created = http
        .post(format!("{endpoint}/2015-03-31/functions"))
        .json(&json!({
            "FunctionName": NAME,
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "Timeout": 30,
            "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(zip) },
            "Environment": { "Variables": {
                "CHAOS_LOG": log.display().to_string(),
                "CHAOS_FAIL_RATE": fail_rate.to_string(),
            }},
        }))
        .send()
        .await
        .context("cannot reach the gateway")?;
    if !created.status().is_success() {
        bail!("cannot create the function: {}", created.text().await?);
    }
    let configured = http
        .put(format!(
            "{endpoint}/2019-09-25/functions/{NAME}/event-invoke-config"
        ))
        .json(&json!({ "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 21600 }))
        .send()
        .await?;
    if !configured.status().is_success() {
        bail!("cannot set the retry policy: {}", configured.text().await?);
    }
    Ok(())
}
