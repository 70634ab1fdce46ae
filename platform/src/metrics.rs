//! Prometheus metrics. Every service has a registry of its own ([`Metrics`]), served as text on
//! its admin port (`/metrics`, `crate::admin`), so four services in one process (the tests)
//! each show their own. Names follow Prometheus conventions (units in the name, counters end in
//! `_total`); label values come from closed sets — topics, tags, consumer groups, gRPC methods
//! and codes, outcomes, reasons, tiers — never an order number or a user id.
//!
//! Built on `prometheus-client` rather than the OpenTelemetry metrics API: the OpenTelemetry
//! Prometheus exporter was discontinued (0.29) and its later releases sit on the older
//! `prometheus` crate with one global-style registry, while `/metrics` here needs one registry
//! per service with exact names. Traces stay on OpenTelemetry (`crate::telemetry`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The upper bounds of [`seconds`]: from a millisecond (a handler, a Redis script) past the
/// 100 ms consume-delay target to half an hour (a saga that waited out a payment window).
const SECONDS: [f64; 22] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0,
];

/// A histogram of durations in seconds (bounds: [`SECONDS`]).
pub fn seconds() -> Histogram {
    Histogram::new(SECONDS)
}

/// A histogram of how many things went together (a batch's items): 1, 2, 4, ... 512.
pub fn sizes() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 10,
    ))
}

/// A family of histograms made by `make`.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A duration as the seconds a histogram observes.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs `measure` every `interval` until `stop`: a gauge read from a store (the outbox's
/// backlog, the parked sagas).
pub async fn every<F, Fut>(
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
    mut measure: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        measure().await;
    }
}

/// One service's metrics registry.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers `metric` as `name` (a counter's `_total` is added when it is written).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Every metric, in the Prometheus (OpenMetrics) text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub topic: String,
    pub tag: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumedLabels {
    pub topic: String,
    pub group: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicGroup {
    pub topic: String,
    pub group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

/// What the messaging of one process did: messages sent and consumed, how long handlers took,
/// how long messages waited in the broker, redeliveries and dead letters.
#[derive(Clone, Debug)]
pub struct MessagingMetrics {
    /// Messages handed to the broker, by topic, tag and outcome (`ok`, `error`; a batch the
    /// broker refused counts each of its messages, all of which are sent again).
    pub sent: Family<SentLabels, Counter>,
    /// Messages handled, by topic, group and outcome (`ok`, `retry`, `rejected`).
    pub consumed: Family<ConsumedLabels, Counter>,
    /// How long a handler took.
    pub handling: Histograms<TopicGroup>,
    /// From the broker's store to the handler's start.
    pub delay: Histograms<TopicGroup>,
    /// Deliveries of a message the broker had delivered before.
    pub redeliveries: Family<TopicGroup, Counter>,
    /// Messages written to the dead letters, by the group that rejected them.
    pub dead_letters: Family<GroupLabel, Counter>,
}

impl Default for MessagingMetrics {
    fn default() -> Self {
        Self {
            sent: Family::default(),
            consumed: Family::default(),
            handling: Family::new_with_constructor(seconds),
            delay: Family::new_with_constructor(seconds),
            redeliveries: Family::default(),
            dead_letters: Family::default(),
        }
    }
}

impl MessagingMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "mq_messages_sent",
            "Messages handed to the broker, by topic, tag and outcome",
            self.sent.clone(),
        );
        metrics.register(
            "mq_messages_consumed",
            "Messages handled, by topic, consumer group and outcome (ok, retry, rejected)",
            self.consumed.clone(),
        );
        metrics.register(
            "mq_message_handling_seconds",
            "How long a message's handler took",
            self.handling.clone(),
        );
        metrics.register(
            "mq_consume_delay_seconds",
            "From the broker's store to the start of the message's handler",
            self.delay.clone(),
        );
        metrics.register(
            "mq_redeliveries",
            "Deliveries of a message the broker had delivered before",
            self.redeliveries.clone(),
        );
        metrics.register(
            "mq_dead_letters",
            "Messages written to the dead letters, by the consumer group that rejected them",
            self.dead_letters.clone(),
        );
    }
}

/// The outbox: what waits to be published, and what went over gRPC instead.
#[derive(Clone, Debug, Default)]
pub struct OutboxMetrics {
    /// Rows not yet published (neither sent nor failed).
    pub backlog: Gauge,
    /// The age of the oldest of them, in seconds (0 when there is none).
    pub oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Rows delivered over gRPC because the broker did not take them in time.
    pub handed_over: Counter,
}

impl OutboxMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "outbox_backlog_rows",
            "Outbox rows not yet published",
            self.backlog.clone(),
        );
        metrics.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest outbox row not yet published",
            self.oldest_age.clone(),
        );
        metrics.register(
            "outbox_handed_over",
            "Outbox rows delivered over gRPC because the broker did not take them in time",
            self.handed_over.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub method: String,
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

/// gRPC calls, served or made, by method and status code.
#[derive(Clone, Debug)]
pub struct GrpcMetrics {
    pub requests: Family<GrpcLabels, Counter>,
    pub duration: Histograms<MethodLabel>,
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(seconds),
        }
    }
}

impl GrpcMetrics {
    /// Registered as `grpc_<side>_requests_total` and `grpc_<side>_request_seconds`
    /// (`side`: `server` or `client`).
    pub fn register(&self, metrics: &Metrics, side: &str) {
        metrics.register(
            &format!("grpc_{side}_requests"),
            &format!("gRPC calls ({side}), by method and status code"),
            self.requests.clone(),
        );
        metrics.register(
            &format!("grpc_{side}_request_seconds"),
            &format!("How long a gRPC call took ({side}), to its response's headers"),
            self.duration.clone(),
        );
    }

    /// One call of `method` that ended with `code` after `took`.
    pub fn observe(&self, method: &str, code: tonic::Code, took: Duration) {
        self.requests
            .get_or_create(&GrpcLabels {
                method: method.to_owned(),
                code: code_name(code),
            })
            .inc();
        self.duration
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .observe(secs(took));
    }
}

/// A status code's name, as grpcurl prints it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_registry_shows_its_own_metrics_in_prometheus_names() {
        let (order, stock) = (Metrics::default(), Metrics::default());
        let grpc = GrpcMetrics::default();
        grpc.register(&order, "server");
        grpc.observe(
            "/ticket.order.v1.OrderService/CreateOrder",
            tonic::Code::InvalidArgument,
            Duration::from_millis(3),
        );
        let text = order.encode();
        assert!(
            text.contains(
                "grpc_server_requests_total{method=\"/ticket.order.v1.OrderService/CreateOrder\",code=\"INVALID_ARGUMENT\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_request_seconds_count{"),
            "{text}"
        );
        assert!(!stock.encode().contains("grpc_server"));
    }
}
