//! Order changes as they happen, across replicas: every change is announced with `pg_notify`
//! in its transaction (so only committed changes are heard), one listener connection per
//! process fans them out to the `WatchOrder` streams of that process. A stream also re-reads
//! its order every few seconds, so a notification lost while the listener reconnects delays an
//! update and never loses it.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use sqlx::postgres::PgListener;
use ticket_proto::order::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::orders::{self, CHANGES_CHANNEL};

/// How often a stream re-reads its order without a notification.
const RESYNC: Duration = Duration::from_secs(2);

/// The process's listener; dropping every handle does not stop it, [`Changes::stop`] does.
#[derive(Clone)]
pub struct Changes {
    sender: broadcast::Sender<String>,
    stop: CancellationToken,
}

impl Changes {
    /// Listens on `database_url`, reconnecting after a failure.
    pub fn start(database_url: &str) -> Self {
        let (sender, _) = broadcast::channel(4096);
        let stop = CancellationToken::new();
        let changes = Self { sender, stop };
        tokio::spawn(listen(
            database_url.to_owned(),
            changes.sender.clone(),
            changes.stop.clone(),
        ));
        changes
    }

    /// Ends the listener and every stream (the service is stopping).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Streams `order` now and on every change until it reaches a final state.
    pub fn watch(
        &self,
        db: DatabaseConnection,
        order: orders::Order,
    ) -> mpsc::Receiver<Result<pb::Order, Status>> {
        let (tx, rx) = mpsc::channel(16);
        let mut heard = self.sender.subscribe();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let order_no = order.order_no.clone();
            let mut version = order.version;
            if tx.send(Ok(orders::message(&order))).await.is_err() || is_final(&order) {
                return;
            }
            loop {
                let look = tokio::select! {
                    heard = heard.recv() => match heard {
                        Ok(changed) => changed == order_no,
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep(RESYNC) => true,
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                };
                if !look {
                    continue;
                }
                match orders::find(&db, &order_no).await {
                    Ok(Some(now)) if now.version != version => {
                        version = now.version;
                        if tx.send(Ok(orders::message(&now))).await.is_err() || is_final(&now) {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, %order_no, "watch could not read the order");
                        let _ = tx
                            .send(Err(Status::unavailable(
                                "the order database is unavailable; watch again",
                            )))
                            .await;
                        return;
                    }
                }
            }
        });
        rx
    }
}

fn is_final(order: &orders::Order) -> bool {
    orders::status_of(order).is_ok_and(orders::Status::is_final)
}

async fn listen(url: String, sender: broadcast::Sender<String>, stop: CancellationToken) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                let _ = sender.send(notification.payload().to_owned());
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = connected => {
                if let Err(err) = result {
                    tracing::warn!(error = %err, "order change listener lost Postgres; reconnecting");
                }
            }
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}
