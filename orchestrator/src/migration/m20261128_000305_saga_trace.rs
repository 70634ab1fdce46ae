//! A saga keeps the trace context of the event that started it (a W3C `traceparent`), so every
//! command it sends, whichever batch decides it, continues the purchase's trace.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE saga ADD COLUMN traceparent TEXT")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE saga DROP COLUMN traceparent")
            .await?;
        Ok(())
    }
}
