//! Orders: one row each, its status changed only by compare-and-set.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE orders (
                    id BIGSERIAL PRIMARY KEY,
                    order_no TEXT NOT NULL UNIQUE,
                    user_id TEXT NOT NULL,
                    request_id TEXT NOT NULL,
                    show_id BIGINT NOT NULL,
                    session_id BIGINT NOT NULL,
                    tier_id BIGINT NOT NULL,
                    quantity INTEGER NOT NULL CHECK (quantity > 0),
                    unit_price_cents BIGINT NOT NULL DEFAULT 0 CHECK (unit_price_cents >= 0),
                    total_cents BIGINT NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
                    status TEXT NOT NULL CHECK (status IN
                        ('PENDING', 'AWAITING_PAYMENT', 'PAID', 'CONFIRMED', 'CANCELLED')),
                    cancel_reason TEXT CHECK (cancel_reason IN
                        ('SOLD_OUT', 'LIMIT_REACHED', 'USER_CANCELLED', 'PAYMENT_EXPIRED', 'SYSTEM')),
                    cancel_note TEXT,
                    expire_at TIMESTAMPTZ,
                    payment_ref TEXT UNIQUE,
                    paid_at TIMESTAMPTZ,
                    version BIGINT NOT NULL DEFAULT 1,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    UNIQUE (user_id, request_id),
                    CHECK ((status = 'CANCELLED') = (cancel_reason IS NOT NULL))
                );
                CREATE INDEX orders_user ON orders (user_id, id DESC);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE orders;")
            .await?;
        Ok(())
    }
}
