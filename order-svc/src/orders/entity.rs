//! The `orders` table.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub order_no: String,
    pub user_id: String,
    pub request_id: String,
    pub show_id: i64,
    pub session_id: i64,
    pub tier_id: i64,
    pub quantity: i32,
    pub unit_price_cents: i64,
    pub total_cents: i64,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub cancel_note: Option<String>,
    pub expire_at: Option<DateTimeUtc>,
    pub payment_ref: Option<String>,
    pub paid_at: Option<DateTimeUtc>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// An order awaiting payment, for the unit tests of what reads orders.
#[cfg(test)]
pub fn sample() -> Model {
    let at = chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("a time");
    Model {
        id: 7,
        order_no: "T0123456789ABCDEF0123".into(),
        user_id: "buyer".into(),
        request_id: "r1".into(),
        show_id: 1,
        session_id: 2,
        tier_id: 3,
        quantity: 2,
        unit_price_cents: 4_200,
        total_cents: 8_400,
        status: "AWAITING_PAYMENT".into(),
        cancel_reason: None,
        cancel_note: None,
        expire_at: Some(at),
        payment_ref: None,
        paid_at: None,
        version: 3,
        created_at: at,
        updated_at: at,
    }
}
