//! A purchase tells its buyer in one step, `NOTIFY` (`NOTIFY_CANCELLED` for an undo), one
//! command naming every channel, where it had a step per channel. The saga log accepts the two
//! names, and keeps accepting the six retired ones its history holds. A saga not ended at a
//! retired step (waiting for its reply, or parked there) is moved to `NOTIFY` with its open
//! timers: its timeout or retry then sends `NOTIFY`, which queues the channels not yet queued
//! (notify-svc queues each once per order, channel and event). A reply of the retired step that
//! comes after is dropped, as any reply of a step the saga is no longer at.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

use super::step_names::checks;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every step name of every declared saga type, before this migration.
const BEFORE: &str = "'STOCK_DEDUCT', 'ORDER_RESERVE', 'AWAIT_PAYMENT', 'STOCK_CONFIRM', \
    'ORDER_CONFIRM', 'STOCK_ROLLBACK', 'ORDER_CANCEL', 'NOTIFY_SMS', 'NOTIFY_EMAIL', \
    'NOTIFY_PUSH', 'NOTIFY_CANCELLED_SMS', 'NOTIFY_CANCELLED_EMAIL', 'NOTIFY_CANCELLED_PUSH'";
/// The steps this migration adds.
const ADDED: &str = "'NOTIFY', 'NOTIFY_CANCELLED'";
/// The purchase's forward steps it retires.
const RETIRED: &str = "'NOTIFY_SMS', 'NOTIFY_EMAIL', 'NOTIFY_PUSH'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "{checks}
                UPDATE saga_timer t SET step = 'NOTIFY'
                    FROM saga s
                    WHERE t.fired_at IS NULL AND t.step IN ({RETIRED})
                      AND s.saga_id = t.saga_id AND s.step = t.step
                      AND s.state IN ('RUNNING', 'PARKED');
                UPDATE saga SET step = 'NOTIFY'
                    WHERE step IN ({RETIRED}) AND state IN ('RUNNING', 'PARKED');",
                checks = checks(&format!("{BEFORE}, {ADDED}"))
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE saga SET step = 'NOTIFY_SMS'
                    WHERE step = 'NOTIFY' AND state IN ('RUNNING', 'PARKED');
                UPDATE saga SET step = 'NOTIFY_PUSH' WHERE step = 'NOTIFY';
                UPDATE saga_timer SET step = 'NOTIFY_SMS' WHERE step = 'NOTIFY';
                UPDATE saga_timer SET step = 'NOTIFY_CANCELLED_SMS' WHERE step = 'NOTIFY_CANCELLED';
                DELETE FROM saga_step WHERE step IN ({ADDED});
                {}",
                checks(BEFORE)
            ))
            .await?;
        Ok(())
    }
}
