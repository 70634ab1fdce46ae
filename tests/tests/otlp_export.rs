//! Spans leave a service over OTLP: stock-svc, started as a user starts it with only the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` set (its own `telemetry.otlp_endpoint` given empty,
//! as the manifests' ConfigMap gives it), exports the spans of a call to an OTLP/gRPC receiver
//! the test runs, in the trace the caller sent and under its service name.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{binary, fresh_database_config};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use ticket_proto::stock::v1::GetTierRequest;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The receiver: every export request it was sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().expect("exports").push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// (service name, span name) of every span received in trace `trace_id` (16 bytes, hex).
    fn spans_of(&self, trace_id: &str) -> Vec<(String, String)> {
        let mut spans = Vec::new();
        for request in self.0.lock().expect("exports").iter() {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref())
                    .map(|v| format!("{:?}", v.value))
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        let id: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                        if id == trace_id {
                            spans.push((service.clone(), span.name.clone()));
                        }
                    }
                }
            }
        }
        spans
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_exports_its_spans_to_the_standard_otlp_endpoint() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let database = fresh_database_config("t_otlp_").await;
    let mut child = Command::new(binary("stock-svc"))
        .env("TICKET_STOCK_GRPC__ADDR", "127.0.0.1:0")
        .env("TICKET_STOCK_ADMIN__ADDR", "127.0.0.1:0")
        .env("TICKET_STOCK_DATABASE__URL", &database.url)
        .env("TICKET_STOCK_REDIS__URL", e2e::redis_url())
        .env("TICKET_STOCK_REDIS__KEY_PREFIX", e2e::unique("test-otlp-"))
        .env(
            "TICKET_STOCK_MESSAGING__NAMESPACE",
            format!("{}_", e2e::unique("t")),
        )
        .env("TICKET_STOCK_PROFILE", "dev")
        .env("TICKET_STOCK_TELEMETRY__OTLP_ENDPOINT", "")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn stock-svc");
    let stdout = child.stdout.take().expect("stdout");
    let _child = KillOnDrop(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .expect("a first line");
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(line.contains("listening on"), "stock-svc printed {line:?}");

    // A caller in a trace of its own asks for a tier that does not exist.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let mut request = tonic::Request::new(GetTierRequest { tier_id: 999_999 });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ASCII"),
    );
    let mut catalog = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let missing = catalog.get_tier(request).await.expect_err("no such tier");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // The batch exporter sends within its interval (5 s).
    let spans = e2e::eventually(Duration::from_secs(30), "the call's spans exported", || {
        let spans = receiver.spans_of(&trace_id);
        async move { (!spans.is_empty()).then_some(spans) }
    })
    .await;
    assert!(
        spans
            .iter()
            .any(|(service, name)| service.contains("stock-svc") && name == "grpc"),
        "the gRPC call's span, from stock-svc: {spans:?}"
    );
    serving.abort();
}
