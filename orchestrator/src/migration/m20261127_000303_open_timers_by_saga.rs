//! The open timers of a saga, found by its id: a reply fires its step's timeout and a saga
//! that ends fires the timers it left, in the statements that record them. The timers a
//! previous version left open that can do nothing (an answered attempt's timeout, an ended
//! saga's timers) are marked fired here, so they do not fire one by one after the upgrade.

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
                "CREATE INDEX saga_timer_open ON saga_timer (saga_id) WHERE fired_at IS NULL;
                UPDATE saga_timer t SET fired_at = now(), fired_by = 'migration'
                    FROM saga_step s
                    WHERE t.fired_at IS NULL AND t.kind = 'STEP_TIMEOUT'
                      AND s.saga_id = t.saga_id AND s.step = t.step AND s.attempt = t.attempt
                      AND s.replied_at IS NOT NULL;
                UPDATE saga_timer t SET fired_at = now(), fired_by = 'migration'
                    FROM saga s
                    WHERE t.fired_at IS NULL AND s.saga_id = t.saga_id
                      AND s.state IN ('COMPLETED', 'COMPENSATED');",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX saga_timer_open")
            .await?;
        Ok(())
    }
}
