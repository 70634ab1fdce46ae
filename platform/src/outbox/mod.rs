//! The transactional outbox. A service writes its messages with [`enqueue`] in the same
//! transaction as the state change they announce; the [`Relay`] publishes unsent rows in
//! batches and marks them sent. Delivery is at-least-once: a relay that stops after publishing
//! and before marking publishes the rows again with the same `message_id`, which inboxes skip.
//! Several relays may run against one table: rows are claimed with `FOR UPDATE SKIP LOCKED`.
//! A relay is woken by the commit of rows in its own process ([`committed`]); its poll is the
//! floor beneath that.

mod wake;

pub use wake::committed;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement, TransactionTrait, Value,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::messaging::{MessagingError, OutgoingMessage, Publisher};

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub message_id: Uuid,
        pub topic: String,
        pub tag: String,
        pub message_key: String,
        pub saga_id: Option<String>,
        pub step: Option<String>,
        pub attempt: i32,
        pub traceparent: Option<String>,
        pub payload: Vec<u8>,
        pub created_at: DateTimeUtc,
        pub sent_at: Option<DateTimeUtc>,
        /// Why the row can never be published; such rows are skipped.
        pub failure: Option<String>,
        /// When an overdue row was delivered another way ([`crate::handover`]).
        pub handed_over_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Writes messages to the outbox inside the caller's transaction (or connection). A message
/// the broker would refuse fails the call, so the caller's transaction does not commit it.
pub async fn enqueue(db: &impl ConnectionTrait, messages: &[OutgoingMessage]) -> Result<(), DbErr> {
    let mut values = Vec::new();
    if let Some(sql) = insert_values(messages, &mut values)? {
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// The columns a statement of the caller's writes an outbox row with.
const COLUMNS: &str =
    "message_id, topic, tag, message_key, saga_id, step, attempt, traceparent, payload, created_at";

/// `message`'s cells for [`COLUMNS`] (`$n::type, ...`), its values appended to `values` and
/// numbered after those already there. A message the broker would refuse fails here.
fn cells(message: &OutgoingMessage, values: &mut Vec<Value>) -> Result<String, DbErr> {
    message
        .validate()
        .map_err(|err| DbErr::Custom(err.to_string()))?;
    let cells: [(Value, &str); 10] = [
        (message.message_id.into(), "uuid"),
        (message.topic.clone().into(), "text"),
        (message.tag.clone().into(), "text"),
        (message.key.clone().into(), "text"),
        (message.saga_id.clone().into(), "text"),
        (message.step.clone().into(), "text"),
        (
            i32::try_from(message.attempt).unwrap_or(i32::MAX).into(),
            "int4",
        ),
        (message.traceparent.clone().into(), "text"),
        (message.payload.clone().into(), "bytea"),
        (chrono::Utc::now().into(), "timestamptz"),
    ];
    let mut selected = Vec::with_capacity(cells.len());
    for (value, ty) in cells {
        values.push(value);
        selected.push(format!("${}::{ty}", values.len()));
    }
    Ok(selected.join(", "))
}

/// `INSERT INTO outbox ... SELECT ... FROM {source}`: `message` as a data-modifying CTE of a
/// caller's statement, written only when `source` (one of that statement's CTEs, returning at
/// most one row) has a row, so a change and its event are one statement and one round trip.
/// The message's values are appended to `values`, numbered after those already there. A
/// message the broker would refuse fails here, before anything is sent.
pub fn insert_from(
    source: &str,
    message: &OutgoingMessage,
    values: &mut Vec<Value>,
) -> Result<String, DbErr> {
    let cells = cells(message, values)?;
    Ok(format!(
        "INSERT INTO outbox ({COLUMNS}) SELECT {cells} FROM {source}"
    ))
}

/// `INSERT INTO outbox ... VALUES ...` of `messages` (none: `None`), for a data-modifying CTE
/// of a caller's statement; values appended to `values` like [`insert_from`]'s.
pub fn insert_values(
    messages: &[OutgoingMessage],
    values: &mut Vec<Value>,
) -> Result<Option<String>, DbErr> {
    if messages.is_empty() {
        return Ok(None);
    }
    let rows = messages
        .iter()
        .map(|message| Ok(format!("({})", cells(message, values)?)))
        .collect::<Result<Vec<_>, DbErr>>()?;
    Ok(Some(format!(
        "INSERT INTO outbox ({COLUMNS}) VALUES {}",
        rows.join(", ")
    )))
}

/// Rows not yet published.
pub async fn pending(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND failure IS NULL",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

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

/// Publishes one batch of unsent rows and marks them sent; returns how many.
pub async fn relay_once(
    db: &DatabaseConnection,
    publisher: &Publisher,
    batch: u64,
) -> Result<usize, RelayError> {
    let began = std::time::Instant::now();
    let txn = db.begin().await?;
    let rows = entity::Entity::find()
        .filter(entity::Column::SentAt.is_null())
        .filter(entity::Column::Failure.is_null())
        .order_by_asc(entity::Column::Id)
        .limit(batch)
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .all(&txn)
        .await?;
    if rows.is_empty() {
        txn.commit().await?;
        return Ok(0);
    }
    // A row that can never be published (written around `enqueue`) is set aside with the
    // reason instead of blocking every row behind it.
    let mut publishable = Vec::with_capacity(rows.len());
    for row in &rows {
        let message = to_outgoing(row);
        match message.validate() {
            Ok(()) => publishable.push((row.id, message)),
            Err(err) => {
                let reason = err.to_string();
                tracing::error!(outbox_id = row.id, %reason, "outbox row cannot be published; set aside");
                txn.execute_raw(Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "UPDATE outbox SET failure = $2 WHERE id = $1",
                    [row.id.into(), reason.into()],
                ))
                .await?;
            }
        }
    }
    let claimed = began.elapsed();
    let messages: Vec<OutgoingMessage> = publishable.iter().map(|(_, m)| m.clone()).collect();
    if !messages.is_empty() {
        publisher.publish_batch(&messages).await?;
    }
    let published = began.elapsed();
    let ids: Vec<i64> = publishable.iter().map(|(id, _)| *id).collect();
    txn.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE outbox SET sent_at = now() WHERE id = ANY($1)",
        [ids.into()],
    ))
    .await?;
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
    loop {
        if stop.is_cancelled() {
            break;
        }
        let mark = wake::mark();
        let wait = match relay_once(&db, &publisher, settings.batch).await {
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

/// Measures the backlog every `interval` until `stop`: rows not yet published and the age of
/// the oldest (`outbox_backlog_rows`, `outbox_oldest_age_seconds`), on the unsent rows' index.
pub async fn measure(
    db: DatabaseConnection,
    metrics: crate::metrics::OutboxMetrics,
    interval: Duration,
    stop: CancellationToken,
) {
    crate::metrics::every(interval, stop, || async {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT count(*) AS rows, \
                   COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS age \
                 FROM outbox WHERE sent_at IS NULL AND failure IS NULL",
            ))
            .await;
        match row {
            Ok(Some(row)) => {
                if let (Ok(rows), Ok(age)) = (
                    row.try_get::<i64>("", "rows"),
                    row.try_get::<f64>("", "age"),
                ) {
                    metrics.backlog.set(rows);
                    metrics.oldest_age.set(age.max(0.0));
                }
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(error = %err, "the outbox backlog could not be measured");
            }
        }
    })
    .await;
}
