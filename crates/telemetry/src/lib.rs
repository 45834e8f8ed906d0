//! One place that sets up Nimbus' logging, tracing and metrics for every binary and service.
//!
//! Human-readable lines by default, JSON lines with [`LogFormat::Json`]; the level comes from
//! `RUST_LOG` (default `info`). Spans go to an OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set ([`trace`]). Call [`init`] once at the top of `main`, inside the tokio runtime, and
//! [`TelemetryGuard::shutdown`] before exit so buffered spans are sent.

pub mod metrics;
pub mod trace;

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

/// Keeps telemetry running until [`TelemetryGuard::shutdown`].
#[must_use = "call shutdown before exit so buffered spans are sent"]
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer_provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Sends the spans still buffered (waiting at most a few seconds for the collector) and
    /// stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.tracer_provider else {
            return;
        };
        // The exporter's thread needs this runtime to make progress, so wait off it.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match stopped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "spans may be lost: the exporter did not stop cleanly")
            }
            Err(error) => tracing::warn!(%error, "spans may be lost: the exporter did not stop"),
        }
    }
}

/// Installs the global subscriber for `service` (the OpenTelemetry `service.name`, unless
/// `OTEL_SERVICE_NAME` says otherwise). A second call (e.g. from tests) leaves the first in
/// place. Fails only when the OTLP exporter is asked for and cannot be set up.
pub fn init(service: &str, format: LogFormat) -> Result<TelemetryGuard, String> {
    let tracer_provider = trace::otlp_provider(service)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracer_provider.as_ref().map(trace::layer));
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
    if tracer_provider.is_some() {
        tracing::info!(service, "exporting traces over OTLP");
    }
    Ok(TelemetryGuard { tracer_provider })
}
