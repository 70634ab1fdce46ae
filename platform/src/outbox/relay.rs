//! The relay: rounds that claim a batch of unsent rows, publish it and commit the mark, woken by
//! commits of outbox rows in this process ([`super::committed`]) or by its poll.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Statement, TransactionTrait,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{entity, wake};
use crate::messaging::{MessagingError, OutgoingMessage, Publisher};

/// How the relay runs.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// Rows claimed (and published) per round.
    pub batch: u64,
    /// Wait after a round that found the outbox empty, unless a commit of outbox rows wakes
    /// the relay first (a round that published goes again at once).
    pub idle_poll: Duration,
    /// Wait after a failed round (broker or database down).
    pub error_backoff: Duration,
    /// Sent rows older than this are deleted.
    pub retention: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 256,
            idle_poll: Duration::from_millis(20),
            error_backoff: Duration::from_millis(500),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why one relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database: {0}")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Publish(#[from] MessagingError),
}

/// Claims a batch of unsent rows and marks them sent, in one statement of a transaction that
/// commits only once the batch is published: a round that fails, or a relay that dies, rolls
/// the mark back and the rows stay for the next round. Rows are locked until then, so
/// another relay skips them.
const CLAIM: &str = "UPDATE outbox SET sent_at = now() WHERE id IN ( \
    SELECT id FROM outbox WHERE sent_at IS NULL AND failure IS NULL \
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING *";

/// Publishes one batch of unsent rows and marks them sent; returns how many. Three round trips
/// to Postgres: `BEGIN`, the claim ([`CLAIM`]), `COMMIT`.
pub async fn relay_once(
    db: &DatabaseConnection,
    publisher: &Publisher,
    batch: u64,
) -> Result<usize, RelayError> {
    let began = std::time::Instant::now();
    let txn = db.begin().await?;
    let mut rows = entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            db.get_database_backend(),
            CLAIM,
            [i64::try_from(batch).unwrap_or(i64::MAX).into()],
        ))
        .all(&txn)
        .await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    // Published in the order they were written (`RETURNING` has no order of its own).
    rows.sort_by_key(|row| row.id);
    // A row that can never be published (written around `enqueue`) is set aside with the
    // reason instead of blocking every row behind it.
    let mut messages = Vec::with_capacity(rows.len());
    for row in &rows {
        let message = to_outgoing(row);
        match message.validate() {
            Ok(()) => messages.push(message),
            Err(err) => {
                let reason = err.to_string();
                tracing::error!(outbox_id = row.id, %reason, "outbox row cannot be published; set aside");
                txn.execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "UPDATE outbox SET sent_at = NULL, failure = $2 WHERE id = $1",
                    [row.id.into(), reason.into()],
                ))
                .await?;
            }
        }
    }
    let claimed = began.elapsed();
    if !messages.is_empty() {
        publisher.publish_batch(&messages).await?;
    }
    let published = began.elapsed();
    txn.commit().await?;
    tracing::debug!(
        rows = rows.len(),
        claimed_ms = claimed.as_secs_f64() * 1e3,
        published_ms = published.as_secs_f64() * 1e3,
        committed_ms = began.elapsed().as_secs_f64() * 1e3,
        "relay round"
    );
    Ok(rows.len())
}

/// Whether any row waits to be published: one read, without a transaction. A relay whose last
/// round found nothing asks this first, so a round that would find nothing costs one round
/// trip instead of three.
pub async fn any_unsent(db: &impl ConnectionTrait) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE sent_at IS NULL AND failure IS NULL) AS any",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<bool>("", "any"))
        .transpose()?
        .unwrap_or(false))
}

fn to_outgoing(row: &entity::Model) -> OutgoingMessage {
    OutgoingMessage {
        topic: row.topic.clone(),
        tag: row.tag.clone(),
        key: row.message_key.clone(),
        message_id: row.message_id,
        saga_id: row.saga_id.clone(),
        step: row.step.clone(),
        attempt: u32::try_from(row.attempt).unwrap_or(0),
        traceparent: row.traceparent.clone(),
        payload: row.payload.clone(),
    }
}

/// A running relay.
pub struct Relay {
    stop: CancellationToken,
    task: JoinHandle<()>,
    published: Arc<AtomicU64>,
}

impl Relay {
    pub fn spawn(
        db: DatabaseConnection,
        publisher: Arc<Publisher>,
        settings: RelaySettings,
    ) -> Self {
        let stop = CancellationToken::new();
        let published = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            db,
            publisher,
            settings,
            stop.clone(),
            Arc::clone(&published),
        ));
        Self {
            stop,
            task,
            published,
        }
    }

    /// Messages this relay has published so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Stops after the round in flight; rows not yet published stay for the next relay.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "outbox relay task failed");
        }
    }
}

async fn run(
    db: DatabaseConnection,
    publisher: Arc<Publisher>,
    settings: RelaySettings,
    stop: CancellationToken,
    published: Arc<AtomicU64>,
) {
    let mut last_purge = tokio::time::Instant::now();
    let mut idle = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let mark = wake::mark();
        let round = async {
            if idle && !any_unsent(&db).await? {
                return Ok(0);
            }
            relay_once(&db, &publisher, settings.batch).await
        };
        let result = round.await;
        idle = matches!(result, Ok(0));
        let wait = match result {
            Ok(n) => {
                published.fetch_add(n as u64, Ordering::Relaxed);
                // Rows written while a round published wait for the next one: it starts at
                // once. Only a round that found nothing waits, for a commit or the next poll.
                if n > 0 {
                    Wait::None
                } else {
                    Wait::Idle(settings.idle_poll)
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "outbox relay round failed; retrying");
                // Commits do not cut this short: a broker that is down is not asked again
                // for every row written meanwhile.
                Wait::Backoff(settings.error_backoff)
            }
        };
        if last_purge.elapsed() > Duration::from_secs(60) {
            last_purge = tokio::time::Instant::now();
            purge_sent(&db, settings.retention).await;
        }
        match wait {
            Wait::None => {}
            Wait::Idle(poll) => {
                if !mark.wait(poll, &stop).await {
                    break;
                }
            }
            Wait::Backoff(delay) => tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            },
        }
    }
}

/// What the relay waits for before its next round.
enum Wait {
    None,
    /// The poll, or a commit of outbox rows since the round began, whichever comes first.
    Idle(Duration),
    /// The backoff after a failed round.
    Backoff(Duration),
}

async fn purge_sent(db: &DatabaseConnection, retention: Duration) {
    let seconds = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "DELETE FROM outbox WHERE sent_at < now() - ($1::float8 * interval '1 second')",
            [seconds.into()],
        ))
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "cannot purge sent outbox rows");
    }
}
