//! The inbox: a handler's effect happens once per message, however often the broker delivers it.
//!
//! [`begin`] opens a transaction that already holds the `(consumer group, message_id)` row; the
//! handler writes its effect in that transaction and commits both together. A second delivery
//! of the same message finds the row and is skipped; a concurrent one waits on the row's lock
//! and is skipped when the first commits (or proceeds if the first rolled back).

use std::collections::HashSet;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};

/// A transaction holding a fresh inbox row, or `None` when the message was already handled.
pub async fn begin(
    db: &DatabaseConnection,
    consumer_group: &str,
    message_id: &str,
) -> Result<Option<DatabaseTransaction>, DbErr> {
    let txn = db.begin().await?;
    if claim(&txn, consumer_group, &[message_id]).await?.is_empty() {
        txn.rollback().await?;
        return Ok(None);
    }
    Ok(Some(txn))
}

/// Inserts the inbox rows of `message_ids` in `txn` (one statement; an id named twice counts
/// once) and returns the ids that were not handled before: the caller handles those, in the
/// same transaction. A message another transaction is handling right now waits for it, and is
/// fresh only if that one rolled back.
pub async fn claim(
    txn: &DatabaseTransaction,
    consumer_group: &str,
    message_ids: &[&str],
) -> Result<HashSet<String>, DbErr> {
    // Each id once, in one order: two transactions claiming the same ids wait on each other's
    // rows, so they take them in the same order.
    let mut message_ids: Vec<&str> = message_ids.to_vec();
    message_ids.sort_unstable();
    message_ids.dedup();
    if message_ids.is_empty() {
        return Ok(HashSet::new());
    }
    // One parameter of every id, so the statement is the same for any number of them.
    let ids = serde_json::Value::Array(message_ids.iter().map(|id| (*id).into()).collect());
    let inserted = txn
        .query_all_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "INSERT INTO inbox (consumer_group, message_id, handled_at) \
             SELECT $1, id, now() FROM jsonb_array_elements_text($2::jsonb) AS v (id) \
             ON CONFLICT DO NOTHING RETURNING message_id",
            [consumer_group.into(), ids.into()],
        ))
        .await?;
    inserted
        .into_iter()
        .map(|row| row.try_get::<String>("", "message_id"))
        .collect()
}

/// Whether a message was handled by a group (for tests and operators).
pub async fn contains(
    db: &DatabaseConnection,
    consumer_group: &str,
    message_id: &str,
) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT 1 AS one FROM inbox WHERE consumer_group = $1 AND message_id = $2",
            [consumer_group.into(), message_id.into()],
        ))
        .await?;
    Ok(row.is_some())
}
