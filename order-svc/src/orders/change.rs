//! The one statement an order change is: the change, its event into the outbox and its
//! announcement, each a CTE, so they are one round trip and commit together.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement, Value};
use ticket_platform::messaging::OutgoingMessage;
use ticket_platform::outbox;

use super::{CHANGES_CHANNEL, Order, Status, entity};
use crate::announcement;

/// Now, to the microsecond Postgres keeps: the time a change writes, and its event carries.
pub(super) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

/// Runs `ctes` (the first named `changed`: it writes the order and returns its row, if it
/// wrote one), writes `event` to the outbox and announces the change, in one statement: the
/// order after the change, or `None` when `changed` wrote nothing (and then nothing is
/// written or announced).
pub(super) async fn change(
    conn: &impl ConnectionTrait,
    mut ctes: Vec<String>,
    mut values: Vec<Value>,
    event: Option<&OutgoingMessage>,
) -> Result<Option<Order>, DbErr> {
    if let Some(event) = event {
        let insert = outbox::insert_from("changed", event, &mut values)?;
        ctes.push(format!("event AS ({insert})"));
    }
    let sql = format!(
        "WITH {} SELECT changed.* FROM changed \
         CROSS JOIN LATERAL (SELECT pg_notify('{CHANGES_CHANNEL}', {})) AS told",
        ctes.join(", "),
        announcement::SQL,
    );
    entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            values,
        ))
        .one(conn)
        .await
}

/// A compare-and-set: `UPDATE ... SET {set}status = to WHERE order_no = $1 AND status IN from
/// {extra}`, where `$2` is the time of the change and `values` are `$3...`.
pub(super) struct Cas<'a> {
    pub from: &'a [Status],
    pub to: Status,
    pub set: &'a str,
    pub extra: &'a str,
    pub values: Vec<Value>,
}

/// Runs `cas` on `order_no` at `at`, with `event` (see [`change`]): the order after the
/// change, or `None` when its status (or `extra`) did not allow it.
pub(super) async fn compare_and_set(
    conn: &impl ConnectionTrait,
    order_no: &str,
    at: DateTime<Utc>,
    cas: Cas<'_>,
    event: Option<&OutgoingMessage>,
) -> Result<Option<Order>, DbErr> {
    let from: Vec<String> = cas
        .from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let update = format!(
        "changed AS (UPDATE orders SET {}status = '{}', version = version + 1, updated_at = $2 \
         WHERE order_no = $1 AND status IN ({}) {} RETURNING *)",
        cas.set,
        cas.to.as_str(),
        from.join(", "),
        cas.extra,
    );
    let mut values: Vec<Value> = vec![order_no.into(), at.into()];
    values.extend(cas.values);
    change(conn, vec![update], values, event).await
}
