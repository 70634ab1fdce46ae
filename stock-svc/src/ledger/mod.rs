//! The stock ledger in Postgres: the record of every order's fence, written after its script
//! succeeded and before the reply leaves. Redis is the fast gate; this is what it is rebuilt
//! from when it loses a tier, and what reconciliation compares it with.
//!
//! One row per order. A fence change is a compare-and-set on the row's state (absent or
//! `D`educted → `C`onfirmed or `R`olled back), so replaying a command writes nothing twice and
//! a confirm counts once. A tier's `sold` is the sum of its confirmed rows ([`totals`]): no
//! counter row that every confirm of a tier would queue on.
//!
//! A record names the stamp its script saw (`tier.live_stamp`, [`crate::gate::Prededucted::stamp`])
//! and is taken only while the tier's stamp is still that one, the tier row share-locked until
//! the record commits. A load of the tier into Redis or a check of Redis against the ledger
//! locks the session's tiers for update before it reads the ledger, so it waits for every
//! record on its way, and then writes a new stamp, so a record whose script ran before it is
//! refused and its command runs the script again on the Redis the check left.

mod writer;

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement, Value};

pub use self::writer::{LedgerWriter, Recorded};
use ticket_platform::recordset::{self, Rows};

use crate::gate::{Fence, FenceState, TierCounters};

/// One fence change to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub tier_id: i64,
    pub fence: Fence,
    /// The tier's stamp the change's script saw.
    pub stamp: String,
}

/// A tier's totals as the ledger holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    pub deducted: i64,
    pub confirmed: i64,
    pub rolled_back_orders: i64,
}

/// The compare-and-set of a fence change: a new order is inserted; an existing one moves only
/// from `D` to `C` or `R`. `RETURNING` yields exactly the rows this statement changed.
const ON_CONFLICT: &str = "\
ON CONFLICT (order_no) DO UPDATE SET
    state = EXCLUDED.state,
    confirmed_at = COALESCE(EXCLUDED.confirmed_at, l.confirmed_at),
    rolled_back_at = COALESCE(EXCLUDED.rolled_back_at, l.rolled_back_at)
WHERE l.state = 'D' AND EXCLUDED.state <> 'D'";

/// What follows the rows to record (named `e(o, t, u, q, s, st)`: order, tier, user, quantity,
/// state, stamp): their tiers share-locked (in id order, as loads and checks lock them); the
/// rows whose stamp is their tier's written as one compare-and-set ([`ON_CONFLICT`]); the
/// orders of the others returned. The stamp is compared on the locked row: under a load or
/// check that holds the tier, the lock waits and then reads the stamp it committed, so a record
/// whose script saw that stamp is taken and one whose script ran before it is refused. A tier
/// stays locked though its rows were refused: the caller's transaction must end before
/// anything checks the session.
static CHECKED_WRITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "checked AS ( \
             SELECT id, live_stamp FROM tier WHERE id = ANY(ARRAY(SELECT t FROM e)) \
             ORDER BY id FOR KEY SHARE), \
         fresh AS (SELECT e.* FROM e JOIN checked c ON c.id = e.t AND c.live_stamp = e.st), \
         written AS ( \
             INSERT INTO stock_ledger AS l \
             (order_no, tier_id, user_id, quantity, state, deducted_at, confirmed_at, rolled_back_at) \
             SELECT o, t, u, q, s, \
                    CASE WHEN s = 'D' THEN now() END, CASE WHEN s = 'C' THEN now() END, \
                    CASE WHEN s = 'R' THEN now() END \
             FROM fresh {ON_CONFLICT}) \
         SELECT e.o FROM e WHERE NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.o = e.o)"
    )
});

/// Records fence changes in the caller's transaction. Each is written at most once: a change
/// the ledger already holds (a replay) writes nothing. Returns the orders whose record was
/// refused: their tier was loaded or checked since their script ran (module docs); their
/// scripts run again.
pub async fn record(
    conn: &impl ConnectionTrait,
    entries: &[LedgerEntry],
) -> Result<Vec<String>, DbErr> {
    let mut refused = Vec::new();
    // One statement per run of distinct orders: a statement may not touch a row twice.
    let mut chunk: Vec<&LedgerEntry> = Vec::new();
    let mut orders: HashSet<&str> = HashSet::new();
    for entry in entries {
        if !orders.insert(entry.fence.order_no.as_str()) {
            refused.extend(record_distinct(conn, &chunk).await?);
            chunk.clear();
            orders.clear();
            orders.insert(entry.fence.order_no.as_str());
        }
        chunk.push(entry);
    }
    refused.extend(record_distinct(conn, &chunk).await?);
    Ok(refused)
}

/// The statement of [`record_distinct_orders`]: the rows travel as arrays.
static RECORD_DISTINCT_ORDERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH e AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], \
                    $5::text[], $6::text[]) AS e(o, t, u, q, s, st)), {}",
        *CHECKED_WRITE
    )
});

/// [`record`] for entries of distinct orders, as one statement that commits on its own. The
/// entries travel as arrays, so the statement is the same whatever their number and Postgres
/// plans it once per connection. Returns the orders whose record was refused.
pub async fn record_distinct_orders(
    pool: &sqlx::PgPool,
    entries: &[LedgerEntry],
) -> Result<Vec<String>, DbErr> {
    let mut orders = Vec::with_capacity(entries.len());
    let mut tiers = Vec::with_capacity(entries.len());
    let mut users = Vec::with_capacity(entries.len());
    let mut quantities = Vec::with_capacity(entries.len());
    let mut states = Vec::with_capacity(entries.len());
    let mut stamps = Vec::with_capacity(entries.len());
    for entry in entries {
        let fence = &entry.fence;
        orders.push(fence.order_no.as_str());
        tiers.push(entry.tier_id);
        users.push(fence.user_id.as_str());
        quantities.push(fence.quantity);
        states.push(fence.state.code());
        stamps.push(entry.stamp.as_str());
    }
    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(RECORD_DISTINCT_ORDERS.as_str()))
        .bind(orders)
        .bind(tiers)
        .bind(users)
        .bind(quantities)
        .bind(states)
        .bind(stamps)
        .fetch_all(pool)
        .await
        .map_err(|err| DbErr::Custom(format!("record the ledger: {err}")))
}

/// The statement of [`record_distinct`]: the rows travel as one `jsonb` parameter
/// ([`ticket_platform::recordset`]), so the statement is the same whatever their number.
static RECORD_IN_TRANSACTION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH e AS (SELECT * FROM {}), {}",
        recordset::from(
            1,
            "e",
            &[
                ("o", "text"),
                ("t", "int8"),
                ("u", "text"),
                ("q", "int8"),
                ("s", "text"),
                ("st", "text"),
            ]
        ),
        *CHECKED_WRITE
    )
});

/// [`record`]'s statement for entries of distinct orders; the orders refused.
async fn record_distinct(
    conn: &impl ConnectionTrait,
    entries: &[&LedgerEntry],
) -> Result<Vec<String>, DbErr> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Rows::with_capacity(entries.len());
    for entry in entries {
        let fence = &entry.fence;
        rows.push([
            ("o", fence.order_no.clone().into()),
            ("t", entry.tier_id.into()),
            ("u", fence.user_id.clone().into()),
            ("q", fence.quantity.into()),
            ("s", fence.state.code().into()),
            ("st", entry.stamp.clone().into()),
        ]);
    }
    let values = vec![rows.into_value()];
    let sql = RECORD_IN_TRANSACTION.as_str();
    conn.query_all_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        sql,
        values,
    ))
    .await?
    .into_iter()
    .map(|row| row.try_get::<String>("", "o"))
    .collect()
}

/// A new stamp, for a load or a check.
pub fn new_stamp() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The stamp of tier `tier_id` (none for a tier of a version before).
pub async fn live_stamp(
    conn: &impl ConnectionTrait,
    tier_id: i64,
) -> Result<Option<String>, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT live_stamp FROM tier WHERE id = $1",
            [tier_id.into()],
        ))
        .await?;
    match row {
        Some(row) => row.try_get::<Option<String>>("", "live_stamp"),
        None => Ok(None),
    }
}

/// Writes `stamp` as the stamp of `tiers`, in the transaction that locked them.
pub async fn stamp(txn: &DatabaseTransaction, tiers: &[i64], stamp: &str) -> Result<(), DbErr> {
    if tiers.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = (0..tiers.len()).map(|k| format!("${}", k + 2)).collect();
    let mut values: Vec<Value> = vec![stamp.into()];
    values.extend(tiers.iter().map(|&id| Value::from(id)));
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        format!(
            "UPDATE tier SET live_stamp = $1 WHERE id IN ({})",
            ids.join(", ")
        ),
        values,
    ))
    .await?;
    Ok(())
}

/// Every fence of a tier (to rebuild Redis, and to reconcile).
pub async fn fences(conn: &impl ConnectionTrait, tier_id: i64) -> Result<Vec<Fence>, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT order_no, user_id, quantity, state FROM stock_ledger WHERE tier_id = $1",
            [tier_id.into()],
        ))
        .await?;
    rows.into_iter()
        .map(|row| {
            let code: String = row.try_get("", "state")?;
            let state = FenceState::from_code(code.trim())
                .ok_or_else(|| DbErr::Custom(format!("unknown ledger state {code:?}")))?;
            Ok(Fence {
                order_no: row.try_get("", "order_no")?,
                state,
                quantity: row.try_get("", "quantity")?,
                user_id: row.try_get("", "user_id")?,
            })
        })
        .collect()
}

/// A tier's ledger totals.
pub async fn totals(conn: &impl ConnectionTrait, tier_id: i64) -> Result<LedgerTotals, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT state, SUM(quantity)::BIGINT AS quantity, COUNT(*) AS orders \
             FROM stock_ledger WHERE tier_id = $1 GROUP BY state",
            [tier_id.into()],
        ))
        .await?;
    let mut totals = LedgerTotals::default();
    for row in rows {
        let code: String = row.try_get("", "state")?;
        let quantity: i64 = row.try_get("", "quantity")?;
        let orders: i64 = row.try_get("", "orders")?;
        match FenceState::from_code(code.trim()) {
            Some(FenceState::Deducted) => totals.deducted = quantity,
            Some(FenceState::Confirmed) => totals.confirmed = quantity,
            Some(FenceState::RolledBack) => totals.rolled_back_orders = orders,
            None => return Err(DbErr::Custom(format!("unknown ledger state {code:?}"))),
        }
    }
    Ok(totals)
}

/// `STOCK_SYNC`: writes a tier's Redis counters to Postgres (`stock_sync`).
pub async fn sync(
    conn: &impl ConnectionTrait,
    tier_id: i64,
    counters: &TierCounters,
) -> Result<(), DbErr> {
    let values: [Value; 5] = [
        tier_id.into(),
        counters.available.into(),
        counters.deducted.into(),
        counters.confirmed.into(),
        counters.sold_out.into(),
    ];
    conn.execute_raw(Statement::from_sql_and_values(
        conn.get_database_backend(),
        "INSERT INTO stock_sync (tier_id, available, deducted, confirmed, sold_out, synced_at) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (tier_id) DO UPDATE SET \
         available = EXCLUDED.available, deducted = EXCLUDED.deducted, \
         confirmed = EXCLUDED.confirmed, sold_out = EXCLUDED.sold_out, synced_at = now()",
        values,
    ))
    .await?;
    Ok(())
}
