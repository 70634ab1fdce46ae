//! Logging and tracing set-up every service uses: `tracing` to stderr (filter from `RUST_LOG`
//! or `telemetry.log`), each line inside a trace ending with its `trace_id`, and OpenTelemetry
//! spans, exported over OTLP when `telemetry.otlp_endpoint` (or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) is set. With export off, spans still get their trace and span
//! ids, so the context is propagated and the logs name their trace.
//!
//! Trace context crosses processes as a W3C `traceparent`: in message properties (set by
//! `OutgoingMessage::new`, kept by the outbox, restored by the consumer and by a redrive), in
//! gRPC metadata (sent by [`crate::grpc_client`], restored by the server bootstrap), and in the
//! rows of work done later on a purchase's behalf (a saga, a notification).

use std::fmt;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::ConfigSource;

/// The standard variable naming where spans are exported, read when `telemetry.otlp_endpoint`
/// is not set.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

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
        // Empty (unset, or set empty as in a ConfigMap of every setting) falls back to the
        // standard variable.
        let endpoint = source.string("telemetry.otlp_endpoint", "");
        let otlp_endpoint = if endpoint.trim().is_empty() {
            std::env::var(OTLP_ENDPOINT_VAR).unwrap_or_default()
        } else {
            endpoint
        };
        Self {
            service_name: service_name.to_owned(),
            log: source.string(
                "telemetry.log",
                "info,rocketmq_client_rust=warn,rocketmq_transport=warn,rocketmq_runtime=warn,rocketmq_observability=warn",
            ),
            otlp_endpoint,
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

/// Installs the global subscriber: spans exported over OTLP when an endpoint is set, spans
/// with ids but exported nowhere otherwise. Safe to call more than once (later calls change
/// nothing), so tests that start several services in one process can each call it.
pub fn init(config: &TelemetryConfig) -> TelemetryGuard {
    if config.otlp_endpoint.is_empty() {
        return install(config, SdkTracerProvider::builder().build(), false);
    }
    match otlp_exporter(config) {
        Ok(exporter) => install(
            config,
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource(config))
                .build(),
            true,
        ),
        Err(err) => {
            eprintln!(
                "telemetry: OTLP export to {} disabled: {err}",
                config.otlp_endpoint
            );
            install(config, SdkTracerProvider::builder().build(), false)
        }
    }
}

/// [`init`] with every span handed to `exporter` as it ends (a test's collector).
pub fn init_exporting_to<E: SpanExporter + 'static>(
    config: &TelemetryConfig,
    exporter: E,
) -> TelemetryGuard {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(resource(config))
        .build();
    install(config, provider, true)
}

fn install(config: &TelemetryConfig, provider: SdkTracerProvider, flush: bool) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(WithTraceId(
            tracing_subscriber::fmt::format().with_target(true),
        ));
    let tracer = provider.tracer(config.service_name.clone());
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false);
    // The log filter chooses what is written; the spans are this project's own, at `info`,
    // whatever the log shows: the trace context must not depend on the log level.
    // Records of the `log` crate (some dependencies write there) go to the same subscriber,
    // unless a library set a logger before. The subscriber is set apart from that: `try_init`
    // would install nothing at all when the logger is taken.
    let _ = tracing_log::LogTracer::init();
    let installed = tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(fmt.with_filter(filter))
            .with(spans.with_filter(traced())),
    )
    .is_ok();
    TelemetryGuard((installed && flush).then_some(provider))
}

/// The crates whose spans (and the events in them) make the traces.
const TRACED_CRATES: [&str; 7] = [
    "ticket_platform",
    "order_svc",
    "stock_svc",
    "notify_svc",
    "orchestrator",
    "ticketctl",
    "e2e",
];

fn traced() -> Targets {
    Targets::new().with_targets(TRACED_CRATES.map(|name| (name, LevelFilter::INFO)))
}

fn resource(config: &TelemetryConfig) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build()
}

fn otlp_exporter(
    config: &TelemetryConfig,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.otlp_endpoint.clone())
        .build()
}

/// A log line's format, ending with the trace id of the span it was written in, if any:
/// `... order accepted order_no=T... trace_id=4bf92f3577b34da6a3ce929d0e0e4736`.
struct WithTraceId<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let context = opentelemetry::Context::current();
        let span = context.span();
        let span_context = span.span_context();
        if !span_context.is_valid() {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{line} trace_id={}", span_context.trace_id())
    }
}

/// The current span's context as a W3C `traceparent`, when it has one.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// `span`'s context as a W3C `traceparent`, when it has one (a span the log filter turned
/// off, or no subscriber, has none).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
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

/// Makes `span` a child of the remote span named by a W3C `traceparent`; a malformed one
/// changes nothing (the span starts a trace of its own).
fn set_parent(span: &tracing::Span, traceparent: &str) {
    let Some(remote) = parse(traceparent) else {
        return;
    };
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// `span`, continuing the trace of `traceparent` when there is one.
pub fn continuing(span: tracing::Span, traceparent: Option<&str>) -> tracing::Span {
    if let Some(traceparent) = traceparent {
        set_parent(&span, traceparent);
    }
    span
}

/// The trace id a W3C `traceparent` names.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    parse(traceparent).map(|sc| sc.trace_id().to_string())
}

fn parse(traceparent: &str) -> Option<opentelemetry::trace::SpanContext> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return None;
    };
    if *version != "00" || trace_id.len() != 32 || span_id.len() != 16 || flags.len() != 2 {
        return None;
    }
    // W3C: lower-case hex only (a number parser would also take `+` and upper case).
    let lower_hex = |part: &str| part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if ![trace_id, span_id, flags]
        .into_iter()
        .all(|part| lower_hex(part))
    {
        return None;
    }
    let remote = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_hex(trace_id).ok()?,
        opentelemetry::trace::SpanId::from_hex(span_id).ok()?,
        opentelemetry::trace::TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        opentelemetry::trace::TraceState::default(),
    );
    remote.is_valid().then_some(remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `write` logs, through the services' format, with spans that are exported nowhere.
    fn logged(write: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false)
                    .event_format(WithTraceId(tracing_subscriber::fmt::format())),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, write);
        String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("UTF-8")
    }

    #[test]
    fn a_log_line_inside_a_continued_trace_names_the_trace_even_with_export_off() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut child = None;
        let text = logged(|| {
            let span = continuing(tracing::info_span!("handling"), Some(parent));
            let _entered = span.enter();
            child = current_traceparent();
            tracing::info!(order_no = "T1", "order accepted");
        });
        assert!(
            text.trim_end().ends_with(
                "order accepted order_no=\"T1\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736"
            ),
            "{text}"
        );
        let child = child.expect("the span has a context to pass on");
        assert_eq!(
            trace_id_of(&child).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(
            !child.contains("00f067aa0ba902b7"),
            "a span of its own: {child}"
        );
    }

    #[test]
    fn a_log_line_outside_any_span_has_no_trace_id() {
        let text = logged(|| tracing::info!("starting"));
        assert!(text.trim_end().ends_with("starting"), "{text}");
        assert!(!text.contains("trace_id"), "{text}");
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
