//! Channels to other services. Each call carries the caller's trace (a W3C `traceparent` in
//! its metadata, from the current span) and is counted and timed as `grpc_client_*`, its method
//! labelled `<peer>/<package>.<Service>/<Method>`.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::grpc::{Metered, MetricsLayer};
use crate::metrics::GrpcMetrics;

/// A channel whose calls carry the trace and are counted.
pub type ClientChannel = Metered<Traced<Channel>>;

/// What a service's channels share: their metrics, and TLS for `https://` peers.
#[derive(Clone, Default)]
pub struct Clients {
    pub metrics: GrpcMetrics,
    pub tls: Option<ClientTlsConfig>,
}

/// A lazily connected channel to `peer` (a service's name, e.g. `order-svc`) at `addr`
/// (`http://host:port`, or `https://host:port` with `tls.ca_file` set): a connection is tried
/// within 2 s, a call answered within `timeout`.
pub fn connect_lazy(
    peer: &'static str,
    addr: &str,
    timeout: Duration,
    clients: &Clients,
) -> Result<ClientChannel, String> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|err| format!("{peer} address {addr}: {err}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout);
    if addr.starts_with("https://") {
        let tls = clients.tls.clone().ok_or_else(|| {
            format!("{peer} address {addr} is https: set tls.ca_file to the CA that signed its certificate")
        })?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|err| format!("{peer} address {addr}: {err}"))?;
    }
    Ok(over(peer, endpoint.connect_lazy(), &clients.metrics))
}

/// `channel` (connected by the caller) with its calls traced and counted.
pub fn over(peer: &'static str, channel: Channel, metrics: &GrpcMetrics) -> ClientChannel {
    tower::Layer::layer(
        &MetricsLayer::client(metrics.clone(), peer),
        Traced { inner: channel },
    )
}

/// A service whose requests carry the current span's `traceparent`.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(value) = crate::telemetry::current_traceparent()
            .and_then(|traceparent| http::HeaderValue::from_str(&traceparent).ok())
        {
            request.headers_mut().insert("traceparent", value);
        }
        self.inner.call(request)
    }
}
