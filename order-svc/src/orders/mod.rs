//! Orders and their state machine. Every status change is a compare-and-set on the current
//! status (`UPDATE ... WHERE status IN (...)`), so of two racing changes exactly one wins; the
//! same statement writes its event (`ORDER_CREATED`, `ORDER_PAID`, `ORDER_CANCELLED` on
//! `ORDER_TOPIC`) to the outbox and announces the change to watchers (`pg_notify`), so the
//! change, its event and its announcement are one round trip to Postgres, and commit together
//! whether the caller runs it alone or in a transaction of its own.
//!
//! `PENDING -> AWAITING_PAYMENT -> PAID -> CONFIRMED`, and `CANCELLED` (with a reason) from any
//! state before `PAID`.

mod change;
pub mod entity;
pub mod status;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Statement, Value};
use ticket_platform::contact::Contact;
use ticket_platform::messaging::{OutgoingMessage, tag, topic};
use ticket_platform::time::timestamp;
use ticket_proto::order::v1 as pb;
use ticket_proto::saga::v1::{OrderCancelled, OrderCreated, OrderPaid};

use self::change::{Cas, change, compare_and_set, now};
pub use self::entity::Model as Order;
pub use self::status::{CancelReason, Status};
use crate::error::Error;

/// The Postgres channel every order change is announced on (payload:
/// [`crate::announcement`], the order number and the changed order).
pub const CHANGES_CHANNEL: &str = "order_changed";

/// The unique constraint on `orders.payment_ref`: a payment reference pays one order.
const PAYMENT_REF_KEY: &str = "orders_payment_ref_key";

/// Where a new order's tickets come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    /// The number the order gets when this request is the first of its (user, request id).
    pub order_no: String,
    pub user_id: String,
    pub request_id: String,
    pub show_id: i64,
    pub session_id: i64,
    pub tier_id: i64,
    pub quantity: i32,
    /// Where the buyer's notifications go (kept in `order_contact`, not in the order's row).
    pub contact: Contact,
}

/// A fresh order number: 80 random bits, nothing to guess from the previous one.
pub fn new_order_no() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
    format!("T{}", &hex[..20])
}

pub fn status_of(order: &Order) -> Result<Status, Error> {
    Status::parse(&order.status)
        .ok_or_else(|| Error::Database(DbErr::Custom(format!("unknown status {}", order.status))))
}

/// The order as clients see it.
pub fn message(order: &Order) -> pb::Order {
    let status = Status::parse(&order.status).map_or(pb::OrderStatus::Unspecified, Status::proto);
    let cancel_reason = order
        .cancel_reason
        .as_deref()
        .and_then(CancelReason::parse)
        .map_or(pb::CancelReason::Unspecified, CancelReason::proto);
    pb::Order {
        order_no: order.order_no.clone(),
        user_id: order.user_id.clone(),
        tier_id: order.tier_id,
        quantity: order.quantity,
        status: status as i32,
        cancel_reason: cancel_reason as i32,
        unit_price_cents: order.unit_price_cents,
        total_cents: order.total_cents,
        expire_at: order.expire_at.map(timestamp),
        payment_ref: order.payment_ref.clone().unwrap_or_default(),
        created_at: Some(timestamp(order.created_at)),
        updated_at: Some(timestamp(order.updated_at)),
        show_id: order.show_id,
        session_id: order.session_id,
    }
}

pub async fn find(conn: &impl ConnectionTrait, order_no: &str) -> Result<Option<Order>, DbErr> {
    entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT * FROM orders WHERE order_no = $1",
            [order_no.into()],
        ))
        .one(conn)
        .await
}

/// The contact the buyer gave with the order; `None` when the order has none (or does not
/// exist).
pub async fn contact(
    conn: &impl ConnectionTrait,
    order_no: &str,
) -> Result<Option<Contact>, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT email, phone, push_token FROM order_contact WHERE order_no = $1",
            [order_no.into()],
        ))
        .await?;
    row.map(|row| {
        Ok(Contact {
            email: row.try_get("", "email")?,
            phone: row.try_get("", "phone")?,
            push_token: row.try_get("", "push_token")?,
        })
    })
    .transpose()
}

async fn existing(conn: &impl ConnectionTrait, order_no: &str) -> Result<Order, Error> {
    find(conn, order_no)
        .await?
        .ok_or_else(|| Error::NotFound(format!("order {order_no} does not exist")))
}

/// Saves a new `PENDING` order unless the buyer's request id was used already; returns the
/// order and whether this call created it. Two calls of one request may race here with the
/// same order number (admission hands a repeat the number it admitted first), so a conflict on
/// either unique key does nothing: naming only (user, request id) made the loser of that race
/// fail on the order number instead. The buyer's contact, when given, is saved in the same
/// statement, with the order it belongs to (a repeated request keeps the first one's).
pub async fn create(conn: &impl ConnectionTrait, new: &NewOrder) -> Result<(Order, bool), Error> {
    let at = now();
    let mut ctes = vec![
        "changed AS (INSERT INTO orders (order_no, user_id, request_id, show_id, session_id, \
         tier_id, quantity, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', $8, $8) \
         ON CONFLICT DO NOTHING RETURNING *)"
            .to_owned(),
    ];
    let mut values: Vec<Value> = vec![
        new.order_no.clone().into(),
        new.user_id.clone().into(),
        new.request_id.clone().into(),
        new.show_id.into(),
        new.session_id.into(),
        new.tier_id.into(),
        new.quantity.into(),
        at.into(),
    ];
    if !new.contact.is_empty() {
        values.extend([
            new.contact.email.clone().into(),
            new.contact.phone.clone().into(),
            new.contact.push_token.clone().into(),
        ]);
        ctes.push(
            "contact AS (INSERT INTO order_contact (order_no, email, phone, push_token) \
             SELECT order_no, $9, $10, $11 FROM changed)"
                .to_owned(),
        );
    }
    let event = OutgoingMessage::new(
        topic::ORDER,
        tag::ORDER_CREATED,
        &new.order_no,
        &OrderCreated {
            order_no: new.order_no.clone(),
            user_id: new.user_id.clone(),
            tier_id: new.tier_id,
            quantity: new.quantity,
            created_at: Some(timestamp(at)),
        },
    );
    if let Some(order) = change(conn, ctes, values, Some(&event)).await? {
        return Ok((order, true));
    }
    let order = entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT * FROM orders WHERE user_id = $1 AND request_id = $2",
            [new.user_id.clone().into(), new.request_id.clone().into()],
        ))
        .one(conn)
        .await?
        .ok_or_else(|| Error::NotFound("the order of this request id vanished".into()))?;
    Ok((order, false))
}

/// The `ORDER_CREATED` event of `order`.
pub fn created_event(order: &Order) -> OrderCreated {
    OrderCreated {
        order_no: order.order_no.clone(),
        user_id: order.user_id.clone(),
        tier_id: order.tier_id,
        quantity: order.quantity,
        created_at: Some(timestamp(order.created_at)),
    }
}

/// `ORDER_RESERVE`: the stock is held; the order takes the server's price and a payment
/// deadline. Repeated → the same order.
pub async fn reserve(
    conn: &impl ConnectionTrait,
    order_no: &str,
    unit_price_cents: i64,
    expire_at: DateTime<Utc>,
) -> Result<Order, Error> {
    let cas = Cas {
        from: &[Status::Pending],
        to: Status::AwaitingPayment,
        set: "unit_price_cents = $3, total_cents = $3 * quantity, expire_at = $4, ",
        extra: "",
        values: vec![unit_price_cents.into(), expire_at.into()],
    };
    if let Some(order) = compare_and_set(conn, order_no, now(), cas, None).await? {
        return Ok(order);
    }
    let order = existing(conn, order_no).await?;
    match status_of(&order)? {
        Status::AwaitingPayment | Status::Paid | Status::Confirmed => Ok(order),
        Status::Cancelled => Err(cancelled(&order)),
        Status::Pending => Err(Error::precondition(
            "CONFLICT",
            format!("order {order_no} changed meanwhile; retry"),
        )),
    }
}

fn cancelled(order: &Order) -> Error {
    Error::precondition(
        "ORDER_CANCELLED",
        format!(
            "order {} was cancelled ({})",
            order.order_no,
            order.cancel_reason.as_deref().unwrap_or("no reason")
        ),
    )
}

/// `ORDER_CONFIRM`: a paid order's tickets are sold. Repeated → the same order.
pub async fn confirm(conn: &impl ConnectionTrait, order_no: &str) -> Result<Order, Error> {
    let cas = Cas {
        from: &[Status::Paid],
        to: Status::Confirmed,
        set: "",
        extra: "",
        values: vec![],
    };
    if let Some(order) = compare_and_set(conn, order_no, now(), cas, None).await? {
        return Ok(order);
    }
    let order = existing(conn, order_no).await?;
    match status_of(&order)? {
        Status::Confirmed => Ok(order),
        Status::Cancelled => Err(cancelled(&order)),
        status => Err(Error::precondition(
            "NOT_PAID",
            format!(
                "order {order_no} is {}; only a paid order is confirmed",
                status.as_str()
            ),
        )),
    }
}

/// Cancels an order that is not paid yet (the buyer, or the saga with its reason). Repeated →
/// the same order, with the first reason. `true` when this call cancelled it.
pub async fn cancel(
    conn: &impl ConnectionTrait,
    order_no: &str,
    reason: CancelReason,
    note: Option<&str>,
) -> Result<(Order, bool), Error> {
    let at = now();
    let event = OutgoingMessage::new(
        topic::ORDER,
        tag::ORDER_CANCELLED,
        order_no,
        &OrderCancelled {
            order_no: order_no.to_owned(),
            reason: reason.as_str().to_owned(),
            cancelled_at: Some(timestamp(at)),
        },
    );
    let cas = Cas {
        from: &[Status::Pending, Status::AwaitingPayment],
        to: Status::Cancelled,
        set: "cancel_reason = $3, cancel_note = $4, ",
        extra: "",
        values: vec![reason.as_str().into(), note.map(str::to_owned).into()],
    };
    if let Some(order) = compare_and_set(conn, order_no, at, cas, Some(&event)).await? {
        return Ok((order, true));
    }
    let order = existing(conn, order_no).await?;
    match status_of(&order)? {
        Status::Cancelled => Ok((order, false)),
        Status::Paid | Status::Confirmed => Err(Error::precondition(
            "ORDER_PAID",
            format!("order {order_no} is paid; it can no longer be cancelled"),
        )),
        _ => Err(Error::precondition(
            "CONFLICT",
            format!("order {order_no} changed meanwhile; retry"),
        )),
    }
}

/// Pays an order awaiting payment, before its deadline, with exactly its total. Paying again
/// with the same payment reference is answered like the first time. `true` when this call
/// paid it.
pub async fn pay(
    conn: &impl ConnectionTrait,
    order_no: &str,
    payment_ref: &str,
    amount_cents: i64,
) -> Result<(Order, bool), Error> {
    let at = now();
    let event = OutgoingMessage::new(
        topic::ORDER,
        tag::ORDER_PAID,
        order_no,
        &OrderPaid {
            order_no: order_no.to_owned(),
            payment_ref: payment_ref.to_owned(),
            amount_cents,
            paid_at: Some(timestamp(at)),
        },
    );
    let cas = Cas {
        from: &[Status::AwaitingPayment],
        to: Status::Paid,
        set: "payment_ref = $3, paid_at = $2, ",
        // The deadline is checked against the time the payment is recorded with.
        extra: "AND expire_at > $2 AND total_cents = $4",
        values: vec![payment_ref.into(), amount_cents.into()],
    };
    if let Some(order) = compare_and_set(conn, order_no, at, cas, Some(&event))
        .await
        .map_err(|err| match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(message))
                if message.contains(PAYMENT_REF_KEY) =>
            {
                Error::AlreadyExists(format!(
                    "payment_ref {payment_ref} was already used for another order"
                ))
            }
            _ => Error::Database(err),
        })?
    {
        return Ok((order, true));
    }
    let order = existing(conn, order_no).await?;
    match status_of(&order)? {
        Status::Paid | Status::Confirmed if order.payment_ref.as_deref() == Some(payment_ref) => {
            Ok((order, false))
        }
        Status::Paid | Status::Confirmed => Err(Error::precondition(
            "ALREADY_PAID",
            format!("order {order_no} was already paid with another payment"),
        )),
        Status::Cancelled => Err(cancelled(&order)),
        Status::Pending => Err(Error::precondition(
            "NOT_RESERVED",
            format!("order {order_no} is still being reserved; pay once it awaits payment"),
        )),
        Status::AwaitingPayment => match order.expire_at {
            Some(deadline) if deadline <= Utc::now() => Err(Error::precondition(
                "PAYMENT_EXPIRED",
                format!("the payment deadline of order {order_no} passed at {deadline}"),
            )),
            _ if order.total_cents != amount_cents => Err(Error::Invalid(format!(
                "amount_cents {amount_cents} does not equal the order's total {}",
                order.total_cents
            ))),
            _ => Err(Error::precondition(
                "CONFLICT",
                format!("order {order_no} changed meanwhile; retry"),
            )),
        },
    }
}
