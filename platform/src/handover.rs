//! The outbox's way around a broker that does not take messages. A row still unpublished
//! `after` its creation (the broker is down, or the relay cannot reach it) is handed to a
//! [`Handover`] that delivers it another way, over gRPC to the service that acts on it, and is
//! marked handed over. The relay still publishes it once the broker is back: every receiver is
//! idempotent (a saga per order, replies deduplicated by saga, step and attempt, commands by
//! their fences), so a message that arrives both ways changes nothing twice.
//!
//! No row is locked while a delivery is under way; two replicas may hand over one row twice,
//! which the receivers absorb like any duplicate.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Statement};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::outbox::entity::{self, Model as OutboxRow};

/// Rows looked at per round.
const BATCH: i64 = 64;

/// Delivers an overdue outbox row another way.
pub trait Handover: Send + Sync + 'static {
    /// Whether this handover delivers rows of `topic` (the topic without namespace).
    fn takes(&self, topic: &str) -> bool;
    /// Delivers one row; an error leaves it for the next round.
    fn deliver(&self, row: OutboxRow) -> impl Future<Output = Result<(), String>> + Send;
}

/// Overdue rows this handover takes and has not handed over yet, oldest first.
async fn overdue(
    db: &DatabaseConnection,
    after: Duration,
    topics: &[String],
) -> Result<Vec<OutboxRow>, DbErr> {
    let millis = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT * FROM outbox WHERE sent_at IS NULL AND failure IS NULL \
             AND handed_over_at IS NULL AND topic = ANY($1) \
             AND created_at < now() - $2 * INTERVAL '1 millisecond' ORDER BY id LIMIT $3",
            [topics.to_vec().into(), millis.into(), BATCH.into()],
        ))
        .all(db)
        .await
}

async fn mark_handed_over(db: &DatabaseConnection, ids: Vec<i64>) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE outbox SET handed_over_at = now() WHERE id = ANY($1)",
        [ids.into()],
    ))
    .await?;
    Ok(())
}

/// Hands over the overdue rows of `topics` once; returns how many were delivered.
pub async fn hand_over_once<H: Handover>(
    db: &DatabaseConnection,
    handover: &Arc<H>,
    after: Duration,
    topics: &[String],
) -> Result<usize, DbErr> {
    let rows = overdue(db, after, topics).await?;
    let deliveries = rows.into_iter().map(|row| {
        let handover = Arc::clone(handover);
        // The call continues the trace the message was written in.
        let span = crate::telemetry::continuing(
            tracing::info_span!("hand over", outbox_id = row.id, topic = %row.topic),
            row.traceparent.as_deref(),
        );
        async move {
            let id = row.id;
            match handover.deliver(row).instrument(span).await {
                Ok(()) => Some(id),
                Err(err) => {
                    tracing::warn!(outbox_id = id, error = %err, "an overdue message could not be handed over; trying again");
                    None
                }
            }
        }
    });
    let delivered: Vec<i64> = futures::future::join_all(deliveries)
        .await
        .into_iter()
        .flatten()
        .collect();
    let count = delivered.len();
    if count > 0 {
        mark_handed_over(db, delivered).await?;
    }
    Ok(count)
}

/// Runs the handover of `topics` (rows older than `after`) until `stop` is cancelled,
/// counting each row handed over in `handed_over` (`outbox_handed_over_total`).
pub fn spawn<H: Handover>(
    db: DatabaseConnection,
    handover: H,
    topics: &[&str],
    after: Duration,
    handed_over: prometheus_client::metrics::counter::Counter,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let topics: Vec<String> = topics
        .iter()
        .filter(|t| handover.takes(t))
        .map(|t| (*t).to_owned())
        .collect();
    let handover = Arc::new(handover);
    let poll = (after / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::spawn(async move {
        loop {
            match hand_over_once(&db, &handover, after, &topics).await {
                Ok(n) if n > 0 => {
                    handed_over.inc_by(n as u64);
                    tracing::warn!(
                        handed_over = n,
                        "the broker does not take messages: handed over over gRPC"
                    );
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "overdue outbox rows could not be read; trying again");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(poll) => {}
            }
        }
    })
}
