//! A service started in this process on port 0, with a gRPC channel to it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::Channel;

/// Resolves when [`Running::stop`] is called (or the handle is dropped).
pub struct Stopped(tokio::sync::oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A service started in this process, stopped by [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    /// Its admin HTTP port (`/metrics`, `/livez`, `/readyz`), once [`Running::admin_at`] said.
    pub admin: SocketAddr,
    pub channel: Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Serves `run(stopped)` (an application's `run_until_stopped`) on a task of its own.
    pub async fn spawn<F, E>(addr: SocketAddr, run: impl FnOnce(Stopped) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = run(Stopped(stopped));
        let server = tokio::spawn(async move { serving.await.map_err(|err| err.to_string()) });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Self {
            addr,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            channel,
            stop,
            server,
        }
    }

    /// The same, its admin port at `admin`.
    #[must_use]
    pub fn admin_at(mut self, admin: SocketAddr) -> Self {
        self.admin = admin;
        self
    }

    /// A handle standing for a service that was stopped (to swap in while restarting).
    pub fn stopped() -> Self {
        let (stop, _) = tokio::sync::oneshot::channel();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            channel: tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy(),
            stop,
            server: tokio::spawn(async { Ok(()) }),
        }
    }

    /// A handle on a service running elsewhere (another process) at `addr`; stopping it is up
    /// to whoever started it.
    pub fn elsewhere(addr: SocketAddr) -> Self {
        let (stop, _) = tokio::sync::oneshot::channel();
        Self {
            addr,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            channel: tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint")
                .connect_lazy(),
            stop,
            server: tokio::spawn(async { Ok(()) }),
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.server)
            .await
            .expect("stops within 30 s")
            .expect("task")
            .expect("clean stop");
    }
}
