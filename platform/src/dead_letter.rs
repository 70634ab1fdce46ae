//! The dead-letter table: messages a handler rejected (they can never succeed), with the reason,
//! so an operator can inspect and redrive them. Recording the same message twice keeps one row.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};

use crate::messaging::IncomingMessage;

pub async fn record(
    db: &DatabaseConnection,
    consumer_group: &str,
    message: &IncomingMessage,
    reason: &str,
) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "INSERT INTO dead_letter (consumer_group, message_id, topic, tag, message_key, reason, payload, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT (consumer_group, message_id) DO NOTHING",
        [
            consumer_group.into(),
            message.message_id.clone().into(),
            message.topic.clone().into(),
            message.tag.clone().into(),
            message.key.clone().into(),
            reason.into(),
            message.body.to_vec().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The reasons recorded for a message, newest first (for tests and operators).
pub async fn reasons(db: &DatabaseConnection, message_id: &str) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT reason FROM dead_letter WHERE message_id = $1 ORDER BY id DESC",
            [message_id.into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<String>("", "reason"))
        .collect()
}
