//! Logging and tracing set-up every service uses: `tracing` to stderr (filter from `RUST_LOG`
//! or `telemetry.log`), and OpenTelemetry traces over OTLP when `telemetry.otlp_endpoint` is
//! set. Trace context crosses processes as a W3C `traceparent`: in message properties (set by
//! `OutgoingMessage::new`, restored by the consumer) and in gRPC metadata (restored by the
//! server bootstrap).

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::ConfigSource;

#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// Default log filter when `RUST_LOG` is unset.
    pub log: String,
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`; empty disables export.
    pub otlp_endpoint: String,
}

impl TelemetryConfig {
    pub fn load(source: &mut ConfigSource, service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            log: source.string(
                "telemetry.log",
                "info,rocketmq_client_rust=warn,rocketmq_transport=warn,rocketmq_runtime=warn,rocketmq_observability=warn",
            ),
            otlp_endpoint: source.string("telemetry.otlp_endpoint", ""),
        }
    }
}

/// Flushes spans on drop; keep it alive for the life of `main`.
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(Err(err)) = self.0.take().map(|provider| provider.shutdown()) {
            eprintln!("telemetry: flushing spans failed: {err}");
        }
    }
}

/// Installs the global subscriber. Safe to call more than once (later calls change nothing),
/// so tests that start several services in one process can each call it.
pub fn init(config: &TelemetryConfig) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true);
    let mut provider = None;
    let otel_layer = if config.otlp_endpoint.is_empty() {
        None
    } else {
        match otlp_provider(config) {
            Ok(p) => {
                let tracer = p.tracer(config.service_name.clone());
                provider = Some(p);
                Some(tracing_opentelemetry::layer().with_tracer(tracer).boxed())
            }
            Err(err) => {
                eprintln!(
                    "telemetry: OTLP export to {} disabled: {err}",
                    config.otlp_endpoint
                );
                None
            }
        }
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel_layer)
        .try_init();
    TelemetryGuard(provider)
}

fn otlp_provider(
    config: &TelemetryConfig,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The current span's context as a W3C `traceparent`, when it is being exported.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the remote span named by a W3C `traceparent`.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    let [_, trace_id, span_id, flags] = parts.as_slice() else {
        return;
    };
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        opentelemetry::trace::TraceId::from_hex(trace_id),
        opentelemetry::trace::SpanId::from_hex(span_id),
        u8::from_str_radix(flags, 16),
    ) else {
        return;
    };
    let remote = opentelemetry::trace::SpanContext::new(
        trace_id,
        span_id,
        opentelemetry::trace::TraceFlags::new(flags),
        true,
        opentelemetry::trace::TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}
