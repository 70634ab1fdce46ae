//! How order events reach the orchestrator when RocketMQ does not carry them. Two ways, both
//! over `SagaEvents.Deliver`, both idempotent on the orchestrator's side (one saga per order):
//!
//! - the outbox's handover: an `ORDER_TOPIC` row still unpublished after `fallback_after` (the
//!   broker is down) is delivered over gRPC ([`EventHandover`]);
//! - the sweeper: an order still `PENDING` after `pending_after` (its `ORDER_CREATED` was
//!   dead-lettered, or lost with a broker's disk) gets its `ORDER_CREATED` delivered again
//!   ([`sweep`]), so no buyer waits on an order no saga drives.

use std::time::Duration;

use prost::Message;
use sea_orm::{DatabaseConnection, EntityTrait, Statement};
use ticket_platform::grpc_client::ClientChannel;
use ticket_platform::grpc_client::Clients;
use ticket_platform::handover::Handover;
use ticket_platform::messaging::{tag, topic};
use ticket_platform::outbox::entity::Model as OutboxRow;
use ticket_proto::saga::v1::order_event::Event;
use ticket_proto::saga::v1::saga_events_client::SagaEventsClient;
use ticket_proto::saga::v1::{OrderCancelled, OrderCreated, OrderEvent, OrderPaid};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::orders::{Order, entity};

/// Orders swept per round.
const SWEEP_BATCH: i64 = 100;

/// The orchestrator's `SagaEvents`, with the token it needs.
#[derive(Clone)]
pub struct Orchestrator {
    client: SagaEventsClient<ClientChannel>,
    token: String,
}

impl Orchestrator {
    /// Connects lazily to `addr` (`http://...`), its calls counted in `clients`.
    pub fn new(addr: &str, token: &str, clients: &Clients) -> Result<Self, String> {
        let channel = ticket_platform::grpc_client::connect_lazy(
            "orchestrator",
            addr,
            Duration::from_secs(10),
            clients,
        )?;
        Ok(Self {
            client: SagaEventsClient::new(channel),
            token: token.to_owned(),
        })
    }

    pub async fn deliver(&self, event: Event) -> Result<(), String> {
        let mut request = tonic::Request::new(OrderEvent { event: Some(event) });
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| "the orchestrator token is not ASCII".to_owned())?;
        request.metadata_mut().insert("authorization", bearer);
        self.client
            .clone()
            .deliver(request)
            .await
            .map(|_| ())
            .map_err(|status| format!("orchestrator: {}", status.message()))
    }
}

/// Delivers overdue `ORDER_TOPIC` rows of the outbox over gRPC.
pub struct EventHandover(pub Orchestrator);

impl Handover for EventHandover {
    fn takes(&self, topic_name: &str) -> bool {
        topic_name == topic::ORDER
    }

    async fn deliver(&self, row: OutboxRow) -> Result<(), String> {
        let payload = row.payload.as_slice();
        let invalid = |err: prost::DecodeError| format!("outbox row {}: {err}", row.id);
        let event = match row.tag.as_str() {
            tag::ORDER_CREATED => Event::Created(OrderCreated::decode(payload).map_err(invalid)?),
            tag::ORDER_PAID => Event::Paid(OrderPaid::decode(payload).map_err(invalid)?),
            tag::ORDER_CANCELLED => {
                Event::Cancelled(OrderCancelled::decode(payload).map_err(invalid)?)
            }
            other => return Err(format!("outbox row {}: no event tag {other}", row.id)),
        };
        self.0.deliver(event).await
    }
}

/// Orders still `PENDING` `after` their creation, in id order past `past_id`, at most a batch.
async fn pending_since(
    db: &DatabaseConnection,
    after: Duration,
    past_id: i64,
) -> Result<Vec<Order>, sea_orm::DbErr> {
    let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT * FROM orders WHERE status = 'PENDING' AND id > $3 \
             AND created_at < now() - $1 * INTERVAL '1 millisecond' ORDER BY id LIMIT $2",
            [millis.into(), SWEEP_BATCH.into(), past_id.into()],
        ))
        .all(db)
        .await
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Orders whose `ORDER_CREATED` was delivered again.
    pub delivered: usize,
    /// Where the next sweep goes on from: the last order delivered, or 0 (the oldest again)
    /// once this sweep reached the newest. Orders left `PENDING` with their saga under way (a
    /// sale's worth, while a participant is down) are passed over, not swept again and again
    /// ahead of newer ones.
    pub next: i64,
}

/// One sweep, past order id `past_id`: `ORDER_CREATED` again for every order left `PENDING`.
/// Stops at the first delivery that fails (the orchestrator is away); the next sweep tries
/// that order again.
pub async fn sweep_once(
    db: &DatabaseConnection,
    orchestrator: &Orchestrator,
    pending_after: Duration,
    past_id: i64,
) -> Result<Swept, String> {
    let stuck = pending_since(db, pending_after, past_id)
        .await
        .map_err(|err| format!("orders: {err}"))?;
    let whole_batch = stuck.len() == usize::try_from(SWEEP_BATCH).unwrap_or(usize::MAX);
    let mut swept = Swept {
        delivered: 0,
        next: past_id,
    };
    for order in stuck {
        match orchestrator
            .deliver(Event::Created(crate::orders::created_event(&order)))
            .await
        {
            Ok(()) => {
                swept.delivered += 1;
                swept.next = order.id;
            }
            Err(err) => {
                tracing::warn!(order_no = %order.order_no, error = %err, "a pending order's saga could not be started; trying again");
                return Ok(swept);
            }
        }
    }
    if !whole_batch {
        swept.next = 0;
    }
    Ok(swept)
}

/// Sweeps every `interval` until `stop`.
pub fn sweep(
    db: DatabaseConnection,
    orchestrator: Orchestrator,
    pending_after: Duration,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut past_id = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            match sweep_once(&db, &orchestrator, pending_after, past_id).await {
                Ok(swept) => {
                    if swept.delivered > 0 {
                        tracing::warn!(
                            orders = swept.delivered,
                            "orders left PENDING had their saga started"
                        );
                    }
                    past_id = swept.next;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the sweep of pending orders failed; trying again")
                }
            }
        }
    })
}
