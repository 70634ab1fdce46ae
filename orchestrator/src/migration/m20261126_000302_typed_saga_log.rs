//! The saga log as the generic engine reads it: states, steps, timer kinds and operator actions
//! are checked values; the compensations still owed are a JSON list; what a saga type carries
//! (the purchase's buyer, tier, quantity, price and cancel reason) is its `data`; the payment
//! flag is the engine's `passed_pivot`; timers are claimed for a lease and record who fired
//! them; operators' actions have a table of their own.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every step name of every declared saga type (the purchase).
const STEPS: &str = "'STOCK_DEDUCT', 'ORDER_RESERVE', 'AWAIT_PAYMENT', 'STOCK_CONFIRM', \
    'ORDER_CONFIRM', 'STOCK_ROLLBACK', 'ORDER_CANCEL', 'NOTIFY_SMS', 'NOTIFY_EMAIL', 'NOTIFY_PUSH'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = format!(
            "ALTER TABLE saga ADD COLUMN data JSONB NOT NULL DEFAULT '{{}}'::jsonb;
            UPDATE saga SET data = jsonb_strip_nulls(jsonb_build_object(
                'user_id', user_id, 'tier_id', tier_id, 'quantity', quantity,
                'unit_price_cents', unit_price_cents, 'cancel_reason', cancel_reason));
            ALTER TABLE saga ADD COLUMN owed JSONB NOT NULL DEFAULT '[]'::jsonb;
            UPDATE saga SET owed = to_jsonb(string_to_array(compensations, ','))
                WHERE compensations <> '';
            ALTER TABLE saga DROP COLUMN compensations;
            ALTER TABLE saga RENAME COLUMN owed TO compensations;
            ALTER TABLE saga RENAME COLUMN paid TO passed_pivot;
            ALTER TABLE saga ADD COLUMN abort_requested BOOLEAN NOT NULL DEFAULT false;
            UPDATE saga SET abort_requested = true
                WHERE state = 'RUNNING' AND cancel_reason IS NOT NULL AND NOT passed_pivot;
            UPDATE saga SET state = 'WAITING' WHERE state = 'AWAITING_PAYMENT';
            ALTER TABLE saga DROP COLUMN user_id, DROP COLUMN tier_id, DROP COLUMN quantity,
                DROP COLUMN unit_price_cents, DROP COLUMN cancel_reason;
            ALTER TABLE saga
                ADD CONSTRAINT saga_state_known CHECK (state IN ('RUNNING', 'WAITING',
                    'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'PARKED')),
                ADD CONSTRAINT saga_step_known CHECK (step IN ({STEPS})),
                ADD CONSTRAINT saga_compensations_list CHECK (jsonb_typeof(compensations) = 'array'),
                ADD CONSTRAINT saga_cancel_reason_known CHECK (
                    data->>'cancel_reason' IS NULL OR data->>'cancel_reason' IN
                    ('SOLD_OUT', 'LIMIT_REACHED', 'USER_CANCELLED', 'PAYMENT_EXPIRED', 'SYSTEM'));
            ALTER TABLE saga_step ADD CONSTRAINT saga_step_step_known CHECK (step IN ({STEPS}));
            ALTER TABLE saga_timer DROP CONSTRAINT saga_timer_kind_check;
            UPDATE saga_timer SET kind = 'DEADLINE' WHERE kind = 'PAYMENT_DEADLINE';
            ALTER TABLE saga_timer
                ADD CONSTRAINT saga_timer_kind_known
                    CHECK (kind IN ('STEP_TIMEOUT', 'RETRY', 'DEADLINE')),
                ADD CONSTRAINT saga_timer_step_known CHECK (step IN ({STEPS})),
                ADD COLUMN claimed_by TEXT,
                ADD COLUMN claimed_until TIMESTAMPTZ,
                ADD COLUMN fired_by TEXT;
            CREATE TABLE saga_action (
                id BIGSERIAL PRIMARY KEY,
                saga_id TEXT NOT NULL REFERENCES saga (saga_id),
                action TEXT NOT NULL CHECK (action IN ('RETRY', 'COMPENSATE', 'SKIP')),
                step TEXT NOT NULL,
                reason TEXT NOT NULL,
                at TIMESTAMPTZ NOT NULL DEFAULT now()
            );
            CREATE INDEX saga_action_saga ON saga_action (saga_id);"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TABLE saga_action;
                ALTER TABLE saga_timer DROP COLUMN claimed_by, DROP COLUMN claimed_until,
                    DROP COLUMN fired_by, DROP CONSTRAINT saga_timer_kind_known,
                    DROP CONSTRAINT saga_timer_step_known;
                UPDATE saga_timer SET kind = 'PAYMENT_DEADLINE' WHERE kind = 'DEADLINE';
                ALTER TABLE saga_timer ADD CONSTRAINT saga_timer_kind_check
                    CHECK (kind IN ('STEP_TIMEOUT', 'RETRY', 'PAYMENT_DEADLINE'));
                ALTER TABLE saga_step DROP CONSTRAINT saga_step_step_known;
                ALTER TABLE saga DROP CONSTRAINT saga_state_known,
                    DROP CONSTRAINT saga_step_known, DROP CONSTRAINT saga_compensations_list,
                    DROP CONSTRAINT saga_cancel_reason_known;
                UPDATE saga SET state = 'AWAITING_PAYMENT' WHERE state = 'WAITING';
                ALTER TABLE saga ADD COLUMN user_id TEXT NOT NULL DEFAULT '',
                    ADD COLUMN tier_id BIGINT NOT NULL DEFAULT 0,
                    ADD COLUMN quantity INTEGER NOT NULL DEFAULT 0,
                    ADD COLUMN unit_price_cents BIGINT, ADD COLUMN cancel_reason TEXT,
                    ADD COLUMN joined TEXT NOT NULL DEFAULT '';
                UPDATE saga SET user_id = data->>'user_id', tier_id = (data->>'tier_id')::BIGINT,
                    quantity = (data->>'quantity')::INTEGER,
                    unit_price_cents = (data->>'unit_price_cents')::BIGINT,
                    cancel_reason = data->>'cancel_reason',
                    joined = COALESCE((SELECT string_agg(s, ',')
                        FROM jsonb_array_elements_text(compensations) AS s), '');
                ALTER TABLE saga DROP COLUMN compensations, DROP COLUMN data,
                    DROP COLUMN abort_requested;
                ALTER TABLE saga RENAME COLUMN joined TO compensations;
                ALTER TABLE saga RENAME COLUMN passed_pivot TO paid;",
            )
            .await?;
        Ok(())
    }
}
