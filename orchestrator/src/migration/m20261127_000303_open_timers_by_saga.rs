//! The open timers of a saga, found by its id: a reply fires its step's timeout and a saga
//! that ends fires the timers it left, in the statements that record them.

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
                "CREATE INDEX saga_timer_open ON saga_timer (saga_id) WHERE fired_at IS NULL",
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
