//! One place that sets up Nimbus' logging and metrics for every binary and service.
//!
//! Human-readable lines by default, JSON lines with [`LogFormat::Json`]; the level comes from
//! `RUST_LOG` (default `info`). Call [`init`] once at the top of `main` and keep the returned
//! guard alive until exit.

pub mod metrics;

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format '{other}': use text or json")),
        }
    }
}

/// Keeps telemetry running; dropping it flushes what is buffered.
#[must_use = "telemetry stops when the guard is dropped"]
#[derive(Debug)]
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber. A second call (e.g. from tests) leaves the first in place.
pub fn init(format: LogFormat) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
    TelemetryGuard { _private: () }
}
