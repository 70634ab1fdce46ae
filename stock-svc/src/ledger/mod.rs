//! The stock ledger in Postgres: the record of every order's fence, written after its script
//! succeeded and before the reply leaves. Redis is the fast gate; this is what it is rebuilt
//! from when it loses a tier, and what reconciliation compares it with.
//!
//! One row per order. A fence change is a compare-and-set on the row's state (absent or
//! `D`educted → `C`onfirmed or `R`olled back), so replaying a command writes nothing twice and
//! a confirm counts once. A tier's `sold` is the sum of its confirmed rows ([`totals`]): no
//! counter row that every confirm of a tier would queue on.

mod writer;

use std::collections::HashSet;
use std::fmt::Write as _;

use sea_orm::{ConnectionTrait, DbErr, Statement, Value};

pub use self::writer::LedgerWriter;
use crate::gate::{Fence, FenceState, TierCounters};

/// One fence change to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    pub tier_id: i64,
    pub fence: Fence,
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

/// Records fence changes in the caller's transaction. Each is written at most once: a change
/// the ledger already holds (a replay) writes nothing. Returns how many entries changed the
/// ledger.
pub async fn record(conn: &impl ConnectionTrait, entries: &[LedgerEntry]) -> Result<usize, DbErr> {
    let mut changed = 0;
    // One statement per run of distinct orders: a statement may not touch a row twice.
    let mut chunk: Vec<&LedgerEntry> = Vec::new();
    let mut orders: HashSet<&str> = HashSet::new();
    for entry in entries {
        if !orders.insert(entry.fence.order_no.as_str()) {
            changed += record_distinct(conn, &chunk).await?;
            chunk.clear();
            orders.clear();
            orders.insert(entry.fence.order_no.as_str());
        }
        chunk.push(entry);
    }
    changed += record_distinct(conn, &chunk).await?;
    Ok(changed)
}

/// The statement of [`record_distinct_orders`]: [`ON_CONFLICT`] over rows that travel as arrays.
static RECORD_DISTINCT_ORDERS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO stock_ledger AS l \
         (order_no, tier_id, user_id, quantity, state, deducted_at, confirmed_at, rolled_back_at) \
         SELECT o, t, u, q, s, \
                CASE WHEN s = 'D' THEN now() END, CASE WHEN s = 'C' THEN now() END, \
                CASE WHEN s = 'R' THEN now() END \
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[]) AS e(o, t, u, q, s) \
         {ON_CONFLICT}"
    )
});

/// [`record`] for entries of distinct orders, as one statement that commits on its own. The entries travel as arrays, so the statement is the same whatever
/// their number and Postgres plans it once per connection. Returns how many changed the ledger.
pub async fn record_distinct_orders(
    pool: &sqlx::PgPool,
    entries: &[LedgerEntry],
) -> Result<u64, DbErr> {
    let mut orders = Vec::with_capacity(entries.len());
    let mut tiers = Vec::with_capacity(entries.len());
    let mut users = Vec::with_capacity(entries.len());
    let mut quantities = Vec::with_capacity(entries.len());
    let mut states = Vec::with_capacity(entries.len());
    for entry in entries {
        let fence = &entry.fence;
        orders.push(fence.order_no.as_str());
        tiers.push(entry.tier_id);
        users.push(fence.user_id.as_str());
        quantities.push(fence.quantity);
        states.push(fence.state.code());
    }
    let done = sqlx::query(sqlx::AssertSqlSafe(RECORD_DISTINCT_ORDERS.as_str()))
        .bind(orders)
        .bind(tiers)
        .bind(users)
        .bind(quantities)
        .bind(states)
        .execute(pool)
        .await
        .map_err(|err| DbErr::Custom(format!("record the ledger: {err}")))?;
    Ok(done.rows_affected())
}

/// One `INSERT ... ON CONFLICT` for entries of distinct orders.
async fn record_distinct(
    conn: &impl ConnectionTrait,
    entries: &[&LedgerEntry],
) -> Result<usize, DbErr> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from(
        "INSERT INTO stock_ledger AS l \
         (order_no, tier_id, user_id, quantity, state, deducted_at, confirmed_at, rolled_back_at) \
         VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(entries.len() * 4);
    for (k, entry) in entries.iter().enumerate() {
        let fence = &entry.fence;
        let at = |state: FenceState| {
            if fence.state == state {
                "now()"
            } else {
                "NULL"
            }
        };
        let n = k * 4;
        let _ = write!(
            sql,
            "{}(${}, ${}, ${}, ${}, '{}', {}, {}, {})",
            if k == 0 { "" } else { ", " },
            n + 1,
            n + 2,
            n + 3,
            n + 4,
            fence.state.code(),
            at(FenceState::Deducted),
            at(FenceState::Confirmed),
            at(FenceState::RolledBack),
        );
        values.push(fence.order_no.clone().into());
        values.push(entry.tier_id.into());
        values.push(fence.user_id.clone().into());
        values.push(fence.quantity.into());
    }
    sql.push(' ');
    sql.push_str(ON_CONFLICT);
    let changed = conn
        .execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            values,
        ))
        .await?
        .rows_affected();
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
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
