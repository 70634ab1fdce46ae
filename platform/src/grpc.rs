//! gRPC server bootstrap shared by every service: `grpc.health.v1.Health`, server reflection
//! (so `grpcurl -plaintext HOST:PORT list` works with no proto files), a span per call that
//! continues the caller's trace (W3C `traceparent` metadata), every call counted and timed by
//! method and status code (`grpc_server_*` metrics), and a graceful stop that turns health to
//! NOT_SERVING before draining in-flight calls.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tower::layer::util::{Identity, Stack};

use crate::metrics::GrpcMetrics;
use crate::transport::GrpcConfig;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::readiness::Dependency;

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The router every service adds its gRPC servers to: calls pass the metrics layer.
pub type Router = tonic::transport::server::Router<Stack<MetricsLayer, Identity>>;

/// Why the gRPC server could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

/// Health and reflection for a service that serves `services` (fully qualified names).
pub struct Bootstrap {
    pub health: HealthReporter,
    services: Vec<&'static str>,
    router: Router,
}

impl Bootstrap {
    /// A router already serving health and reflection; add the service's own servers to
    /// [`Bootstrap::router`].
    /// `grpc`: the concurrency per connection, the longest a call may take, and TLS.
    pub fn new(
        services: &[&'static str],
        metrics: GrpcMetrics,
        grpc: &GrpcConfig,
    ) -> Result<Self, GrpcError> {
        let (health, health_server) = tonic_health::server::health_reporter();
        let mut v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ticket_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE);
        let mut v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(ticket_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE);
        for name in services {
            v1 = v1.with_service_name(*name);
            v1alpha = v1alpha.with_service_name(*name);
        }
        let mut server = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(grpc.concurrency_per_connection);
        if !grpc.request_timeout.is_zero() {
            server = server.timeout(grpc.request_timeout);
        }
        if let Some(tls) = grpc.tls.server().map_err(GrpcError::Tls)? {
            server = server.tls_config(tls)?;
        }
        let router = server
            .layer(MetricsLayer {
                metrics,
                methods: Methods::Served(Arc::new(served_methods(services))),
            })
            .trace_fn(|request| {
                crate::telemetry::continuing(
                    tracing::info_span!("grpc", path = %request.uri().path()),
                    request
                        .headers()
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok()),
                )
            })
            .add_service(health_server)
            .add_service(v1.build_v1()?)
            .add_service(v1alpha.build_v1alpha()?);
        Ok(Self {
            health,
            services: services.to_vec(),
            router,
        })
    }

    /// Adds the service's own gRPC servers.
    pub fn router(self, add: impl FnOnce(Router) -> Router) -> Self {
        Self {
            router: add(self.router),
            ..self
        }
    }

    /// Serves until `shutdown` resolves: health follows `dependencies` (NOT_SERVING while one
    /// does not answer); at the stop it turns NOT_SERVING, new calls are refused and in-flight
    /// calls finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        dependencies: Vec<Dependency>,
        ready: tokio::sync::watch::Sender<crate::admin::Readiness>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), GrpcError> {
        let Self {
            health,
            services,
            router,
        } = self;
        set_status(&health, &services, ServingStatus::Serving).await;
        let watching = CancellationToken::new();
        let watcher = tokio::spawn(crate::readiness::watch(
            dependencies,
            health.clone(),
            services.clone(),
            ready.clone(),
            watching.clone(),
        ));
        let health_at_stop = health.clone();
        let stop = async move {
            shutdown.await;
            watching.cancel();
            let _ = watcher.await;
            set_status(&health_at_stop, &services, ServingStatus::NotServing).await;
            let _ = ready.send_replace(Err("stopping".into()));
            tracing::info!("health is NOT_SERVING; draining in-flight calls");
        };
        // Accepted connections send at once (TCP_NODELAY): with Nagle on, a response's later
        // frames waited for the client's delayed ACK, ~40 ms per call at low load.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        router.serve_with_incoming_shutdown(incoming, stop).await?;
        Ok(())
    }
}

pub(crate) async fn set_status(
    health: &HealthReporter,
    services: &[&'static str],
    status: ServingStatus,
) {
    health.set_service_status("", status).await;
    for name in services {
        health.set_service_status(*name, status).await;
    }
}

/// The paths (`/<package>.<Service>/<Method>`) of every method of `services`, health and
/// reflection: the only method labels the metrics take.
fn served_methods(services: &[&'static str]) -> HashSet<String> {
    use prost::Message;
    let mut methods: HashSet<String> = REFLECTION_SERVICES
        .iter()
        .map(|service| format!("/{service}/ServerReflectionInfo"))
        .collect();
    for set in [
        ticket_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else {
            continue;
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                let name = format!("{package}.{}", service.name());
                if name != HEALTH_SERVICE && !services.contains(&name.as_str()) {
                    continue;
                }
                for method in &service.method {
                    methods.insert(format!("/{name}/{}", method.name()));
                }
            }
        }
    }
    methods
}

/// Counts and times every call by method and status code (`grpc_server_*`, or
/// `grpc_client_*` on a [`crate::grpc_client`] channel). On a server, a path that is not one of
/// the served methods is counted as `other`, so a caller cannot make labels up. A call dropped
/// before it answered (its deadline passed, the client went away) is counted as `CANCELLED`;
/// one the transport failed (no connection) as `UNAVAILABLE`. The time is to the response's
/// headers (for a stream, to its start).
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: GrpcMetrics,
    methods: Methods,
}

/// How a call's method label is named.
#[derive(Clone)]
enum Methods {
    /// A server's: the path, when it is one of these.
    Served(Arc<HashSet<String>>),
    /// A client's: the peer's name before the path (the generated clients' paths are a closed
    /// set), e.g. `stock-svc/ticket.saga.v1.Participant/Execute`.
    Peer(&'static str),
}

impl MetricsLayer {
    /// The layer of a client's calls to `peer`.
    pub fn client(metrics: GrpcMetrics, peer: &'static str) -> Self {
        Self {
            metrics,
            methods: Methods::Peer(peer),
        }
    }

    fn method(&self, path: &str) -> String {
        match &self.methods {
            Methods::Served(served) if served.contains(path) => path.to_owned(),
            Methods::Served(_) => "other".to_owned(),
            Methods::Peer(peer) => format!("{peer}{path}"),
        }
    }
}

/// A call under way: counted when it answers, or as `CANCELLED` when dropped before.
struct Call {
    metrics: GrpcMetrics,
    method: String,
    started: Instant,
    answered: bool,
}

impl Call {
    fn answered(mut self, code: tonic::Code) {
        self.answered = true;
        self.metrics
            .observe(&self.method, code, self.started.elapsed());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.metrics
                .observe(&self.method, tonic::Code::Cancelled, self.started.elapsed());
        }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            layer: self.clone(),
        }
    }
}

/// A gRPC service whose calls are counted and timed.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    layer: MetricsLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for Metered<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call {
            metrics: self.layer.metrics.clone(),
            method: self.layer.method(request.uri().path()),
            started: Instant::now(),
            answered: false,
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            // An error status comes in the headers (a trailers-only answer); a call answered
            // with a message has its OK in the trailers.
            let code = match &answer {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unavailable,
            };
            call.answered(code);
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_methods_a_service_serves_are_labels() {
        let methods = served_methods(&["ticket.order.v1.OrderService"]);
        for served in [
            "/ticket.order.v1.OrderService/CreateOrder",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(methods.contains(served), "{served}");
        }
        for not_served in [
            "/ticket.stock.v1.StockService/Prededuct",
            "/ticket.order.v1.OrderService/MadeUp",
        ] {
            assert!(!methods.contains(not_served), "{not_served}");
        }
    }
}
