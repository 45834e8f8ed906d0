//! Prometheus metrics: one process-wide recorder behind the `metrics` facade, which every
//! crate writes to with `metrics::counter!` / `histogram!` / `gauge!`, rendered as
//! Prometheus text by [`render`] for a service's `/metrics`.
//!
//! Names start with `nimbus_`; durations are histograms in seconds with the buckets below.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the duration histograms: sub-millisecond gateway work up to Lambda's
/// 15-minute maximum.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder (once per process; later calls return the same handle). `None` if
/// another recorder was installed first, in which case metrics go there.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS)
                .map_err(|error| eprintln!("nimbus: metrics are off: {error}"))
                .ok()?;
            builder
                .install_recorder()
                .map_err(|error| eprintln!("nimbus: metrics are off: {error}"))
                .ok()
        })
        .as_ref()
}

/// Everything recorded so far, in the Prometheus text format; empty before [`install`].
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_rendered() {
        install().unwrap();
        metrics::counter!("nimbus_test_total", "function" => "f").increment(2);
        metrics::histogram!("nimbus_test_seconds").record(0.003);
        let text = render();
        assert!(
            text.contains("nimbus_test_total{function=\"f\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("nimbus_test_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            install().is_some(),
            "a second install returns the same handle"
        );
    }
}
