//! The purchase's cancellation notices (`NOTIFY_CANCELLED_SMS`, `_EMAIL`, `_PUSH`) are step
//! names the saga log accepts.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

use super::step_names::checks;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every step name of every declared saga type, before this migration.
const BEFORE: &str = "'STOCK_DEDUCT', 'ORDER_RESERVE', 'AWAIT_PAYMENT', 'STOCK_CONFIRM', \
    'ORDER_CONFIRM', 'STOCK_ROLLBACK', 'ORDER_CANCEL', 'NOTIFY_SMS', 'NOTIFY_EMAIL', 'NOTIFY_PUSH'";
/// The steps this migration adds.
const ADDED: &str = "'NOTIFY_CANCELLED_SMS', 'NOTIFY_CANCELLED_EMAIL', 'NOTIFY_CANCELLED_PUSH'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&checks(&format!("{BEFORE}, {ADDED}")))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "DELETE FROM saga_step WHERE step IN ({ADDED}); {}",
                checks(BEFORE)
            ))
            .await?;
        Ok(())
    }
}
