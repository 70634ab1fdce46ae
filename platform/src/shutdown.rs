//! The process's stop signal: SIGTERM (Kubernetes) or Ctrl-C (a terminal).

use std::future::Future;

/// Resolves on the first SIGTERM or Ctrl-C. The handlers are installed when this is called,
/// not when the future is first polled: call it before announcing that the service is up, so a
/// signal sent right after the announcement stops the service cleanly instead of killing it.
pub fn signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate())
            .and_then(|t| signal(SignalKind::interrupt()).map(|i| (t, i)));
        async move {
            match handlers {
                Ok((mut terminate, mut interrupt)) => tokio::select! {
                    _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = interrupt.recv() => tracing::info!("Ctrl-C: stopping"),
                },
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM or Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
