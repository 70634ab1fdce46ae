//! The admin HTTP port every service serves beside gRPC (order 9100, stock 9101, orchestrator
//! 9102, notify 9103; `admin.addr`; port 0 picks a free one):
//! - `/metrics`: the service's own metrics in the Prometheus text format;
//! - `/livez`: 200 while the process serves at all (a Kubernetes liveness probe);
//! - `/readyz`: 200 while its database, and Redis where it sells, answer; 503 with what does
//!   not, and while it starts or stops. The broker is not part of it: during a broker outage
//!   the gRPC fallback needs every pod in service (broker trouble shows in the metrics).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Whether the service is ready: `Err` names what is not (a dependency that does not answer,
/// the start, the stop).
pub type Readiness = Result<(), String>;

#[derive(Clone)]
struct Admin {
    metrics: Metrics,
    ready: watch::Receiver<Readiness>,
}

async fn serve_metrics(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        admin.metrics.encode(),
    )
}

async fn livez() -> &'static str {
    "ok\n"
}

async fn readyz(State(admin): State<Admin>) -> (StatusCode, String) {
    match &*admin.ready.borrow() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serves the admin port on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    ready: watch::Receiver<Readiness>,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(Admin {
            metrics: metrics.clone(),
            ready,
        });
    let addr = listener.local_addr().ok();
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(error = %err, ?addr, "the admin port stopped");
    }
}
