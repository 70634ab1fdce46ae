//! One purchase is one trace: the buyer's `CreateOrder` (sent with a W3C `traceparent`, as a
//! gateway would), every saga step in stock-svc, order-svc and the orchestrator, and the
//! notifications notify-svc sends, whether the steps travel over RocketMQ or over the gRPC
//! fallback while the broker is down. The spans go to a collector of the test's own (the
//! services' telemetry with an in-memory exporter); a span's service is the crate it was
//! written in.

#![recursion_limit = "512"]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use e2e::broker::PrivateBroker;
use e2e::saga::{pay, settings};
use e2e::system::System;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use orchestrator::dispatch::Transport;
use ticket_proto::order::v1 as pb;

/// Every span that ended in this test process.
#[derive(Clone, Debug, Default)]
struct Collector(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("spans").extend(batch);
        Ok(())
    }
}

/// The process's telemetry, exporting to the collector (installed once for both tests).
fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<(Collector, ticket_platform::telemetry::TelemetryGuard)> =
        OnceLock::new();
    &COLLECTOR
        .get_or_init(|| {
            let collector = Collector::default();
            let guard = ticket_platform::telemetry::init_exporting_to(
                &ticket_platform::telemetry::TelemetryConfig {
                    service_name: "ticket-services".into(),
                    log: "error".into(),
                    otlp_endpoint: String::new(),
                },
                collector.clone(),
            );
            (collector, guard)
        })
        .0
}

/// A span, as the test reads it: the crate that wrote it, its name, its gRPC path if any.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    service: String,
    name: String,
    path: String,
}

impl Collector {
    /// The spans of trace `trace_id` that ended so far.
    fn trace(&self, trace_id: &str) -> BTreeSet<Seen> {
        let attribute = |span: &SpanData, key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
                .unwrap_or_default()
        };
        self.0
            .lock()
            .expect("spans")
            .iter()
            .filter(|span| span.span_context.trace_id().to_string() == trace_id)
            .map(|span| Seen {
                service: attribute(span, "code.module.name")
                    .split("::")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                name: span.name.to_string(),
                path: attribute(span, "path"),
            })
            .collect()
    }
}

impl Collector {
    /// How many spans named `name` trace `trace_id` holds.
    fn count(&self, trace_id: &str, name: &str) -> usize {
        self.0
            .lock()
            .expect("spans")
            .iter()
            .filter(|span| {
                span.span_context.trace_id().to_string() == trace_id && span.name == name
            })
            .count()
    }
}

/// A trace id of the test's own and the `traceparent` of a buyer's call in it.
fn buyers_trace() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    (trace_id, traceparent)
}

/// A buyer's order of one ticket, the call carrying `traceparent`.
async fn order_in_trace(system: &System, tier: i64, buyer: &str, traceparent: &str) -> pb::Order {
    let mut request = tonic::Request::new(pb::CreateOrderRequest {
        user_id: buyer.into(),
        tier_id: tier,
        quantity: 1,
        request_id: "r".into(),
        wait_for_decision: false,
        contact: None,
    });
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ASCII"));
    system
        .order
        .orders()
        .create_order(request)
        .await
        .expect("create")
        .into_inner()
}

/// Waits until the trace holds spans of all four services, notify-svc's sending of the three
/// confirmations included; returns them.
async fn whole_trace(collector: &Collector, trace_id: &str) -> BTreeSet<Seen> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let trace = collector.trace(trace_id);
        let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
        let sent = collector.count(trace_id, "send notification");
        if ["order_svc", "stock_svc", "orchestrator", "notify_svc"]
            .iter()
            .all(|service| services.contains(service))
            && sent >= 3
        {
            return trace;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after 90 s, {sent} notification(s) sent in trace {trace_id} ({} spans in all): {trace:#?}",
            collector.0.lock().expect("spans").len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has(trace: &BTreeSet<Seen>, service: &str, name: &str) -> bool {
    trace.iter().any(|s| s.service == service && s.name == name)
}

fn grpc_calls(trace: &BTreeSet<Seen>) -> BTreeSet<&str> {
    trace
        .iter()
        .filter(|s| s.name == "grpc")
        .map(|s| s.path.as_str())
        .collect()
}

/// A buyer's whole purchase of one ticket on `system`, begun with a `traceparent` of the
/// test's own: ordered, reserved, paid (a call of its own, in a trace of its own: the steps it
/// lets the saga take continue the purchase's), completed. Returns the purchase's trace once
/// every service's spans are in it, after checking the spans every purchase has, and the gRPC
/// paths called in it.
async fn purchase_in_one_trace(system: &System, tier: i64) -> (BTreeSet<Seen>, BTreeSet<String>) {
    let (trace_id, traceparent) = buyers_trace();
    let order = order_in_trace(system, tier, "traced-buyer", &traceparent).await;
    let reserved = system
        .order_reaches(&order.order_no, pb::OrderStatus::AwaitingPayment)
        .await;
    pay(system, &reserved).await;
    system.saga_reaches(&order.order_no, "COMPLETED").await;

    let trace = whole_trace(collector(), &trace_id).await;
    assert!(has(&trace, "order_svc", "create_order"), "{trace:#?}");
    assert!(has(&trace, "orchestrator", "saga command"), "{trace:#?}");
    assert!(has(&trace, "stock_svc", "execute"), "{trace:#?}");
    // order-svc's own steps (reserve, confirm), not only the call that created the order.
    assert!(has(&trace, "order_svc", "order step"), "{trace:#?}");
    let calls = grpc_calls(&trace).into_iter().map(str::to_owned).collect();
    (trace, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_over_rocketmq_is_one_trace_from_create_order_to_its_notifications() {
    // The collector is the process's subscriber before any span is made.
    collector();
    let system = System::start(settings(Duration::from_secs(300)), Transport::RocketMq).await;
    let tier = system.stock().tier(10, 4).await.tier_id;

    let (trace, calls) = purchase_in_one_trace(&system, tier).await;
    // Every step was a message, consumed in the trace: no participant was called over gRPC.
    assert!(has(&trace, "ticket_platform", "consume"), "{trace:#?}");
    for path in [
        "/ticket.saga.v1.Participant/Execute",
        "/ticket.saga.v1.SagaEvents/Deliver",
    ] {
        assert!(!calls.contains(path), "{path} in {calls:?}");
    }
    // The services' own calls carried the trace: order-svc asked the catalog for the tier,
    // notify-svc asked order-svc for the buyer's contact and stock-svc for the show.
    for path in [
        "/ticket.order.v1.OrderService/CreateOrder",
        "/ticket.stock.v1.CatalogService/GetTier",
        "/ticket.order.v1.ContactService/GetContact",
        "/ticket.stock.v1.CatalogService/GetShow",
    ] {
        assert!(calls.contains(path), "{path} in {calls:?}: {trace:#?}");
    }
    system.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_over_the_grpc_fallback_is_one_trace_too() {
    collector();
    let broker = PrivateBroker::start();
    let messaging = ticket_platform::messaging::MessagingConfig {
        name_server: broker.name_server(),
        ..e2e::messaging_config(3)
    };
    let system = System::start_on(
        messaging,
        settings(Duration::from_secs(300)),
        Transport::RocketMq,
        false,
    )
    .await;
    let tier = system.stock().tier(10, 4).await.tier_id;
    // With the broker down, the order's event and every step go over gRPC.
    broker.kill();

    let (trace, calls) = purchase_in_one_trace(&system, tier).await;
    for path in [
        "/ticket.order.v1.OrderService/CreateOrder",
        "/ticket.saga.v1.SagaEvents/Deliver",
        "/ticket.saga.v1.Participant/Execute",
    ] {
        assert!(calls.contains(path), "{path} in {calls:?}: {trace:#?}");
    }
    system.stop(&[tier]).await;
}
