//! Order changes as they happen, across replicas: every change is announced with `pg_notify`
//! in its transaction (so only committed changes are heard), one listener connection per
//! process hands each to the `WatchOrder` streams of that order in that process, and to no
//! other. The announcement carries the changed order ([`announcement`]), so a stream passes it
//! on without reading the order back. A stream is subscribed before its order is read
//! ([`Changes::subscribe`]), so a change that commits between the two is heard. It re-reads its
//! order when it hears an announcement without one (an order too long to carry), whenever the
//! listener lost its connection (notifications sent meanwhile were not heard), and after half
//! a minute without a word, as a last net.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sqlx::postgres::PgListener;
use ticket_proto::order::v1 as pb;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::announcement;
use crate::orders::{self, CHANGES_CHANNEL};

/// How long a stream waits without a word before it re-reads its order anyway.
const RESYNC: Duration = Duration::from_secs(30);

/// What a stream heard about its order.
#[derive(Clone, Debug, PartialEq)]
enum Heard {
    /// Nothing yet.
    Nothing,
    /// The order as a change left it, at its version (shared by the streams of the order).
    Changed(i64, Arc<pb::Order>),
    /// Something may have changed: read the order.
    Look,
}

/// The streams of each watched order, each under an id of its own.
type Streams = HashMap<String, Vec<(u64, watch::Sender<Heard>)>>;

/// The process's listener; dropping every handle does not stop it, [`Changes::stop`] does.
#[derive(Clone)]
pub struct Changes {
    streams: Arc<Mutex<Streams>>,
    next_id: Arc<AtomicU64>,
    stop: CancellationToken,
}

/// The order number an announcement names, and what it says of the order.
fn heard(payload: &str) -> (&str, Heard) {
    let (order_no, carried) = announcement::read(payload);
    let heard = carried.map_or(Heard::Look, |(version, order)| {
        Heard::Changed(version, Arc::new(order))
    });
    (order_no, heard)
}

fn lock(streams: &Mutex<Streams>) -> std::sync::MutexGuard<'_, Streams> {
    streams.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A stream's place among the listener's streams, given up when the stream ends.
struct Registered {
    streams: Arc<Mutex<Streams>>,
    order_no: String,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut streams = lock(&self.streams);
        if let Some(senders) = streams.get_mut(&self.order_no) {
            senders.retain(|(id, _)| *id != self.id);
            if senders.is_empty() {
                streams.remove(&self.order_no);
            }
        }
    }
}

impl Changes {
    /// Listens on `database_url`, reconnecting after a failure.
    pub fn start(database_url: &str) -> Self {
        let changes = Self::unlistened();
        tokio::spawn(listen(
            database_url.to_owned(),
            Arc::clone(&changes.streams),
            changes.stop.clone(),
        ));
        changes
    }

    fn unlistened() -> Self {
        Self {
            streams: Arc::default(),
            next_id: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// How many orders have streams open in this process.
    pub fn watched(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Ends the listener and every stream (the service is stopping).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Streams `order` now and on every change until it reaches a final state. Changes that
    /// commit before this call are not heard: subscribe before reading the order when the two
    /// may be apart ([`Changes::subscribe`]).
    pub fn watch(
        &self,
        db: DatabaseConnection,
        order: orders::Order,
    ) -> mpsc::Receiver<Result<pb::Order, Status>> {
        self.subscribe(&order.order_no).stream(db, order)
    }

    /// Hears the changes of `order_no` from now on; read the order, then
    /// [`Subscription::stream`] it.
    pub fn subscribe(&self, order_no: &str) -> Subscription {
        let (sender, heard) = watch::channel(Heard::Nothing);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.streams)
            .entry(order_no.to_owned())
            .or_default()
            .push((id, sender));
        Subscription {
            heard,
            registered: Registered {
                streams: Arc::clone(&self.streams),
                order_no: order_no.to_owned(),
                id,
            },
            stop: self.stop.clone(),
        }
    }
}

/// An order's changes heard since [`Changes::subscribe`]; dropped unused, it is given up.
pub struct Subscription {
    heard: watch::Receiver<Heard>,
    registered: Registered,
    stop: CancellationToken,
}

impl Subscription {
    /// Streams `order` (read after the subscription) now and on every change until it reaches
    /// a final state.
    pub fn stream(
        self,
        db: DatabaseConnection,
        order: orders::Order,
    ) -> mpsc::Receiver<Result<pb::Order, Status>> {
        let (tx, rx) = mpsc::channel(16);
        let Self {
            mut heard,
            registered,
            stop,
        } = self;
        tokio::spawn(async move {
            let _registered = registered;
            let order_no = order.order_no.clone();
            let mut version = order.version;
            if tx.send(Ok(orders::message(&order))).await.is_err() || is_final(&order) {
                return;
            }
            loop {
                let now = tokio::select! {
                    changed = heard.changed() => match changed {
                        Ok(()) => heard.borrow_and_update().clone(),
                        Err(_) => return,
                    },
                    () = tokio::time::sleep(RESYNC) => Heard::Look,
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                };
                let (seen, message) = match now {
                    Heard::Nothing => continue,
                    Heard::Changed(seen, message) => (seen, Arc::unwrap_or_clone(message)),
                    Heard::Look => match orders::find(&db, &order_no).await {
                        Ok(Some(now)) => (now.version, orders::message(&now)),
                        Ok(None) => continue,
                        Err(err) => {
                            tracing::warn!(error = %err, %order_no, "watch could not read the order");
                            let _ = tx
                                .send(Err(Status::unavailable(
                                    "the order database is unavailable; watch again",
                                )))
                                .await;
                            return;
                        }
                    },
                };
                // Versions only grow: an announcement older than what the stream sent (a
                // re-read may have overtaken it) is not sent again.
                if seen <= version {
                    continue;
                }
                version = seen;
                let done = matches!(
                    message.status(),
                    pb::OrderStatus::Confirmed | pb::OrderStatus::Cancelled
                );
                if tx.send(Ok(message)).await.is_err() || done {
                    return;
                }
            }
        });
        rx
    }
}

fn is_final(order: &orders::Order) -> bool {
    orders::status_of(order).is_ok_and(orders::Status::is_final)
}

/// Hands `heard` to the streams of `order_no` (to every stream when `order_no` is `None`).
fn tell(streams: &Mutex<Streams>, order_no: Option<&str>, heard: &Heard) {
    let streams = lock(streams);
    let senders: Box<dyn Iterator<Item = &(u64, watch::Sender<Heard>)>> = match order_no {
        Some(order_no) => Box::new(streams.get(order_no).into_iter().flatten()),
        None => Box::new(streams.values().flatten()),
    };
    for (_, sender) in senders {
        sender.send_replace(heard.clone());
    }
}

async fn listen(url: String, streams: Arc<Mutex<Streams>>, stop: CancellationToken) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            // What changed while no listener was connected was not heard: every stream looks.
            tell(&streams, None, &Heard::Look);
            loop {
                match listener.try_recv().await? {
                    Some(notification) => {
                        let (order_no, heard) = heard(notification.payload());
                        tell(&streams, Some(order_no), &heard);
                    }
                    // The connection was lost and is back: what was sent meanwhile was not heard.
                    None => tell(&streams, None, &Heard::Look),
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> orders::Order {
        orders::entity::sample()
    }

    /// Every stream leaves the listener's map when it ends, whichever way it ends: at a final
    /// state, or when its client goes away.
    #[tokio::test]
    async fn a_stream_that_ends_leaves_no_trace() {
        let changes = Changes::unlistened();
        let db = DatabaseConnection::default();
        let mut first = changes.watch(db.clone(), order());
        let second = changes.watch(db.clone(), order());
        let mut other = order();
        other.order_no = "T99999999999999999999".into();
        let third = changes.watch(db, other);
        assert_eq!(changes.watched(), 2);
        assert!(first.recv().await.is_some_and(|o| o.is_ok()));

        let mut confirmed = orders::message(&order());
        confirmed.status = pb::OrderStatus::Confirmed as i32;
        tell(
            &changes.streams,
            Some("T0123456789ABCDEF0123"),
            &Heard::Changed(4, Arc::new(confirmed)),
        );
        let last = first.recv().await.expect("the final state").expect("ok");
        assert_eq!(last.status(), pb::OrderStatus::Confirmed);
        assert!(first.recv().await.is_none(), "the stream ended");
        drop(second);
        drop(third);
        for _ in 0..100 {
            if changes.watched() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} orders still watched", changes.watched());
    }

    /// A change announced after the subscription and before the order was read (and streamed)
    /// reaches the stream; one announced before the subscription does not.
    #[tokio::test]
    async fn a_change_heard_between_subscribing_and_reading_reaches_the_stream() {
        let changes = Changes::unlistened();
        let read = order();
        let mut paid = orders::message(&read);
        paid.status = pb::OrderStatus::Paid as i32;
        let paid = Heard::Changed(read.version + 1, Arc::new(paid));

        // Told before anyone subscribed: nobody hears it.
        tell(&changes.streams, Some(&read.order_no), &paid);
        let mut late = changes.watch(DatabaseConnection::default(), read.clone());
        assert!(
            late.recv().await.is_some_and(|o| o.is_ok()),
            "the order read"
        );
        let missed = tokio::time::timeout(Duration::from_millis(200), late.recv()).await;
        assert!(
            missed.is_err(),
            "a change before the subscription is not heard"
        );

        let subscription = changes.subscribe(&read.order_no);
        tell(&changes.streams, Some(&read.order_no), &paid);
        let mut stream = subscription.stream(DatabaseConnection::default(), read);
        let first = stream.recv().await.expect("the order read").expect("ok");
        assert_eq!(first.status(), pb::OrderStatus::AwaitingPayment);
        let next = tokio::time::timeout(Duration::from_secs(1), stream.recv())
            .await
            .expect("the change heard before the stream started")
            .expect("a message")
            .expect("ok");
        assert_eq!(next.status(), pb::OrderStatus::Paid);
    }
}
