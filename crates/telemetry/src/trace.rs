//! OpenTelemetry traces: spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and the W3C `traceparent` that carries a trace
//! across the hops a span cannot follow by itself: the queue and the gRPC calls between services.
//!
//! Without an endpoint no span is exported, [`traceparent`] finds nothing, and callers fall back
//! to the `traceparent` they were given, so a caller's trace still reaches the function.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};
use tracing_subscriber::registry::LookupSpan;

/// The header (and gRPC metadata key) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Builds the OTLP pipeline when the environment asks for one. The exporter reads the standard
/// `OTEL_EXPORTER_OTLP_*` variables, the sampler `OTEL_TRACES_SAMPLER`/`_ARG`, the batching
/// `OTEL_BSP_*`, and the resource `OTEL_SERVICE_NAME`/`OTEL_RESOURCE_ATTRIBUTES`;
/// `service` names the service when `OTEL_SERVICE_NAME` does not.
pub(crate) fn otlp_provider(service: &str) -> Result<Option<SdkTracerProvider>, String> {
    let configured = ENDPOINT_VARIABLES
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()));
    if !configured {
        return Ok(None);
    }
    // The grpc exporter reads the endpoint from the environment itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_protocol(opentelemetry_otlp::Protocol::Grpc)
        .build()
        .map_err(|e| format!("cannot set up the OTLP trace exporter: {e}"))?;
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok(Some(provider))
}

/// The layer that turns `tracing` spans into OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
) -> OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("nimbus"))
        .with_tracked_inactivity(false)
        .with_threads(false)
}

/// The W3C `traceparent` of `span`, or `None` when spans are not being traced.
pub fn traceparent(span: &Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Fills the `trace_id` field (declared `trace_id = tracing::field::Empty`) of `span` with
/// the id of its trace, so that every log line under it names the trace.
pub fn record_trace_id(span: &Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
    }
}

/// The `traceparent` of the current span (see [`traceparent`]).
pub fn current_traceparent() -> Option<String> {
    traceparent(&Span::current())
}

/// Makes the span `traceparent` names the parent of `span`, which must not have been entered
/// yet. A malformed `traceparent`, or spans not being traced, leaves `span` as it is.
pub fn set_parent(span: &Span, traceparent: &str) {
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
        let _ = span.set_parent(context);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traced<T>(body: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(layer(&provider));
        tracing::subscriber::with_default(subscriber, body)
    }

    #[test]
    fn a_child_span_keeps_the_callers_trace_and_gets_its_own_id() {
        let child = traced(|| {
            let span = tracing::info_span!("child");
            set_parent(&span, PARENT);
            traceparent(&span)
        })
        .expect("a traced span has a traceparent");
        let parts: Vec<&str> = child.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(parts[2], "00f067aa0ba902b7");
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn a_span_without_parent_starts_a_trace() {
        let (outer, inner) = traced(|| {
            let span = tracing::info_span!("root");
            let _entered = span.enter();
            let child = tracing::info_span!("child");
            (current_traceparent(), traceparent(&child))
        });
        let (outer, inner) = (outer.expect("root traced"), inner.expect("child traced"));
        assert_eq!(outer[3..35], inner[3..35], "one trace");
        assert_ne!(outer, inner);
    }

    #[test]
    fn a_malformed_parent_is_ignored() {
        let child = traced(|| {
            let span = tracing::info_span!("child");
            set_parent(&span, "00-not-a-trace-01");
            traceparent(&span)
        })
        .expect("still traced");
        assert!(!child.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn log_lines_under_a_traced_span_name_its_trace() {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let lines = lines.clone();
            move || Writer(lines.clone())
        };
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(layer(&provider))
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            set_parent(&span, PARENT);
            record_trace_id(&span);
            let _entered = span.enter();
            tracing::info!("handled");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736""#),
            "{text}"
        );
    }

    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn nothing_is_traced_without_the_layer() {
        let subscriber = tracing_subscriber::registry();
        let found = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("untraced");
            set_parent(&span, PARENT);
            traceparent(&span)
        });
        assert_eq!(found, None);
    }
}
