//! Whether a flash sale sold correctly, from what the buyers saw, the orders, the sagas and the
//! stock at the end.

use std::collections::{HashMap, HashSet};

use ticket_proto::order::v1 as pb;

use super::crowd::Buyer;
use super::report::Check;
use crate::catalog::StockAtEnd;

/// Every check, passed or not.
pub fn checks(
    tickets: i64,
    order_nos: &[String],
    finals: &[pb::Order],
    saga_states: &HashMap<String, String>,
    stock: &StockAtEnd,
    buyers: &[Buyer],
) -> Vec<Check> {
    let confirmed: i64 = finals
        .iter()
        .filter(|o| o.status() == pb::OrderStatus::Confirmed)
        .map(|o| i64::from(o.quantity))
        .sum();
    let distinct: HashSet<&String> = order_nos.iter().collect();
    let parked = saga_states.values().filter(|s| *s == "PARKED").count();
    let unfinished = saga_states
        .values()
        .filter(|s| !matches!(s.as_str(), "COMPLETED" | "COMPENSATED"))
        .count();
    let without_saga = order_nos
        .iter()
        .filter(|n| !saga_states.contains_key(*n))
        .count();
    let failed = buyers.iter().filter(|b| b.failure.is_some()).count();
    vec![
        Check::new(
            "tickets sold agree",
            confirmed == stock.stock.confirmed && confirmed == stock.tier.sold,
            format!(
                "{confirmed} in CONFIRMED orders, stock confirmed {}, catalog sold {}",
                stock.stock.confirmed, stock.tier.sold
            ),
        ),
        Check::new(
            "nothing left deducted",
            stock.stock.deducted == 0,
            format!("stock deducted {}", stock.stock.deducted),
        ),
        Check::new(
            "no order sold twice",
            distinct.len() == order_nos.len() && confirmed <= tickets,
            format!(
                "{} distinct order numbers of {} accepted; {confirmed} tickets confirmed of {tickets}",
                distinct.len(),
                order_nos.len()
            ),
        ),
        Check::new(
            "every saga final, none parked",
            unfinished == 0 && without_saga == 0,
            format!(
                "{} sagas, {parked} parked, {} other unfinished, {without_saga} orders without one",
                saga_states.len(),
                unfinished - parked
            ),
        ),
        Check::new(
            "Redis agrees with the ledger",
            !stock.reconcile.drift,
            stock.reconcile.report.clone(),
        ),
        Check::new(
            "every buyer's call answered as a sale expects",
            failed == 0,
            format!("{failed} buyer(s) failed"),
        ),
    ]
}
