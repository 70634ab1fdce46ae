//! What an order change announces on [`crate::orders::CHANGES_CHANNEL`]: the order's number, its
//! version and the changed order, separated by tabs, so a `WatchOrder` stream passes the change
//! on without reading the order back. The statement that changes the order writes the
//! announcement itself ([`SQL`]), so the change, its event and its announcement are one round
//! trip to Postgres. An announcement that carries no readable order (the number alone, when
//! the order would not fit in a notification) asks the streams to read it.

use chrono::{DateTime, Utc};
use prost::Message;
use serde::Deserialize;
use ticket_proto::order::v1 as pb;

use crate::orders;

/// The announcement, in SQL over the statement's `changed` row (the order after its change):
/// the order's row as JSON. Postgres refuses a notification payload of 8,000 bytes or more,
/// and the transaction with it, so an order whose row is longer is announced by its number.
pub const SQL: &str = "CASE WHEN octet_length(row_to_json(changed)::text) <= 7000 \
     THEN changed.order_no || chr(9) || changed.version || chr(9) || row_to_json(changed)::text \
     ELSE changed.order_no END";

/// The order number an announcement names, and the version and order it carries (`None`:
/// read the order).
pub fn read(payload: &str) -> (&str, Option<(i64, pb::Order)>) {
    let mut fields = payload.splitn(3, '\t');
    let order_no = fields.next().unwrap_or_default();
    let carried = fields
        .next()
        .and_then(|version| version.parse().ok())
        .zip(fields.next().and_then(order));
    (order_no, carried)
}

/// The order an announcement carries: the row as JSON, or the order as clients see it in
/// hex-coded protobuf (what a replica of the version before announces).
fn order(text: &str) -> Option<pb::Order> {
    if text.starts_with('{') {
        return serde_json::from_str::<Row>(text)
            .ok()?
            .order()
            .map(|order| orders::message(&order));
    }
    pb::Order::decode(&unhex(text)?[..]).ok()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An `orders` row as `row_to_json` writes it (timestamps in ISO 8601 with their offset).
#[derive(Deserialize)]
struct Row {
    id: i64,
    order_no: String,
    user_id: String,
    request_id: String,
    show_id: i64,
    session_id: i64,
    tier_id: i64,
    quantity: i32,
    unit_price_cents: i64,
    total_cents: i64,
    status: String,
    cancel_reason: Option<String>,
    cancel_note: Option<String>,
    expire_at: Option<String>,
    payment_ref: Option<String>,
    paid_at: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// `Some(None)` for no time, `None` for one that cannot be read.
fn maybe_time(text: Option<&str>) -> Option<Option<DateTime<Utc>>> {
    text.map_or(Some(None), |text| time(text).map(Some))
}

impl Row {
    fn order(self) -> Option<orders::Order> {
        Some(orders::Order {
            id: self.id,
            order_no: self.order_no,
            user_id: self.user_id,
            request_id: self.request_id,
            show_id: self.show_id,
            session_id: self.session_id,
            tier_id: self.tier_id,
            quantity: self.quantity,
            unit_price_cents: self.unit_price_cents,
            total_cents: self.total_cents,
            status: self.status,
            cancel_reason: self.cancel_reason,
            cancel_note: self.cancel_note,
            expire_at: maybe_time(self.expire_at.as_deref())?,
            payment_ref: self.payment_ref,
            paid_at: maybe_time(self.paid_at.as_deref())?,
            version: self.version,
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    const ROW: &str = r#"{"id":7,"order_no":"T0123456789ABCDEF0123","user_id":"buyer","request_id":"r1","show_id":1,"session_id":2,"tier_id":3,"quantity":2,"unit_price_cents":4200,"total_cents":8400,"status":"AWAITING_PAYMENT","cancel_reason":null,"cancel_note":null,"expire_at":"2026-09-21T14:13:20.25+00:00","payment_ref":null,"paid_at":null,"version":3,"created_at":"2026-09-21T16:13:20.000001+02:00","updated_at":"2026-09-21T14:13:20+00:00"}"#;

    /// The order [`ROW`] is.
    fn order() -> orders::Order {
        let mut order = orders::entity::sample();
        order.expire_at = order
            .expire_at
            .map(|at| at + chrono::Duration::milliseconds(250));
        order.created_at += chrono::Duration::microseconds(1);
        order
    }

    #[test]
    fn an_announced_row_is_the_order_as_clients_see_it() {
        let order = order();
        let text = format!("{}\t3\t{ROW}", order.order_no);
        assert_eq!(
            read(&text),
            (order.order_no.as_str(), Some((3, orders::message(&order))))
        );
    }

    #[test]
    fn an_announcement_of_the_version_before_is_read_too() {
        let order = order();
        let mut text = format!("{}\t3\t", order.order_no);
        for byte in orders::message(&order).encode_to_vec() {
            let _ = write!(text, "{byte:02x}");
        }
        assert_eq!(
            read(&text),
            (order.order_no.as_str(), Some((3, orders::message(&order))))
        );
    }

    #[test]
    fn an_announcement_without_a_readable_order_asks_for_a_look() {
        assert_eq!(read("T1"), ("T1", None));
        assert_eq!(read("T1\t3"), ("T1", None));
        assert_eq!(read("T1\tx\t0a00"), ("T1", None));
        assert_eq!(read("T1\t3\t0a0"), ("T1", None));
        assert_eq!(read("T1\t3\tzz"), ("T1", None));
        assert_eq!(read("T1\t3\t{\"id\":7}"), ("T1", None));
        let bad_time = ROW.replace("2026-09-21T14:13:20.25+00:00", "tomorrow");
        assert_eq!(read(&format!("T1\t3\t{bad_time}")), ("T1", None));
    }
}
