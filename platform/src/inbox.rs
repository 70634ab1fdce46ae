//! The inbox: a handler's effect happens once per message, however often the broker delivers it.
//!
//! [`begin`] opens a transaction that already holds the `(consumer group, message_id)` row; the
//! handler writes its effect in that transaction and commits both together. A second delivery
//! of the same message finds the row and is skipped; a concurrent one waits on the row's lock
//! and is skipped when the first commits (or proceeds if the first rolled back).

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
    let inserted = txn
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "INSERT INTO inbox (consumer_group, message_id, handled_at) VALUES ($1, $2, now()) \
             ON CONFLICT DO NOTHING",
            [consumer_group.into(), message_id.into()],
        ))
        .await?
        .rows_affected();
    if inserted == 0 {
        txn.rollback().await?;
        return Ok(None);
    }
    Ok(Some(txn))
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
