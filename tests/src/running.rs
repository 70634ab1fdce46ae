//! A service started in this process on port 0, with a gRPC channel to it.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::Channel;

/// A service started in this process, stopped by [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    pub channel: Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    pub async fn spawn<F>(
        addr: SocketAddr,
        run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> F,
    ) -> Self
    where
        F: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(stopped));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Self {
            addr,
            channel,
            stop,
            server,
        }
    }

    /// A handle standing for a service that was stopped (to swap in while restarting).
    pub fn stopped() -> Self {
        let (stop, _) = tokio::sync::oneshot::channel();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
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
