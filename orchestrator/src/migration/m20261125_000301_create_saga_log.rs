//! The saga log: one row per saga, its step history, and its durable timers.

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
                "CREATE TABLE saga (
                    saga_id TEXT PRIMARY KEY,
                    order_no TEXT NOT NULL UNIQUE,
                    saga_type TEXT NOT NULL,
                    state TEXT NOT NULL,
                    step TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    attempt_base INTEGER NOT NULL DEFAULT 0,
                    compensations TEXT NOT NULL DEFAULT '',
                    user_id TEXT NOT NULL,
                    tier_id BIGINT NOT NULL,
                    quantity INTEGER NOT NULL,
                    unit_price_cents BIGINT,
                    paid BOOLEAN NOT NULL DEFAULT false,
                    cancel_reason TEXT,
                    deadline TIMESTAMPTZ,
                    incident TEXT,
                    version BIGINT NOT NULL DEFAULT 1,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE INDEX saga_state ON saga (state, created_at);
                CREATE TABLE saga_step (
                    id BIGSERIAL PRIMARY KEY,
                    saga_id TEXT NOT NULL REFERENCES saga (saga_id),
                    step TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    command TEXT NOT NULL,
                    transport TEXT NOT NULL,
                    outcome TEXT,
                    reason TEXT,
                    detail TEXT,
                    sent_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    replied_at TIMESTAMPTZ,
                    UNIQUE (saga_id, step, attempt)
                );
                CREATE TABLE saga_timer (
                    id BIGSERIAL PRIMARY KEY,
                    saga_id TEXT NOT NULL REFERENCES saga (saga_id),
                    kind TEXT NOT NULL CHECK (kind IN ('STEP_TIMEOUT', 'RETRY', 'PAYMENT_DEADLINE')),
                    step TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    due_at TIMESTAMPTZ NOT NULL,
                    fired_at TIMESTAMPTZ
                );
                CREATE INDEX saga_timer_due ON saga_timer (due_at) WHERE fired_at IS NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE saga_timer; DROP TABLE saga_step; DROP TABLE saga;")
            .await?;
        Ok(())
    }
}
