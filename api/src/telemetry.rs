//! Logging and span export, in one place.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Registry};

use crate::config::{LogFormat, TracingConfig};

/// The span exporter when `MCP_TRACING_ENABLED`: OTLP over HTTP with JSON bodies, batched on
/// a thread of its own, sampled by trace id at `MCP_TRACING_SAMPLE_RATE` unless the caller's
/// `traceparent` has decided. Incoming and outgoing `traceparent` headers follow W3C Trace
/// Context. Flush it with `shutdown` before the process exits.
pub fn span_exporter(config: &TracingConfig) -> anyhow::Result<Option<SdkTracerProvider>> {
    if !config.tracing_enabled {
        return Ok(None);
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&config.tracing_sample_rate),
        "MCP_TRACING_SAMPLE_RATE must be between 0 and 1, not {}",
        config.tracing_sample_rate
    );
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        config.tracing_sample_rate,
    )));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("bookingd")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Some(provider))
}

/// A subscriber writing to `sink`, filtered by `RUST_LOG` or `default_filter`; its spans also
/// go to `spans` when given.
pub fn get_subscriber<W>(
    default_filter: &str,
    format: LogFormat,
    sink: W,
    spans: Option<&SdkTracerProvider>,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let export = spans.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("bookingd")));
    let registry = Registry::default().with(filter).with(export);
    match format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(sink),
            ),
        ),
        LogFormat::Pretty => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(sink)))
        }
    }
}

/// Installs the subscriber for the whole process; a second call is ignored.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Makes the span continue the trace of the request's `traceparent`, when span export is on.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if headers.get("traceparent").is_none() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&opentelemetry_http::HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}
