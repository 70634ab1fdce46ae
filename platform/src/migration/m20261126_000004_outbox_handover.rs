//! The outbox records when an overdue row was handed over another way (gRPC).

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
                "ALTER TABLE outbox ADD COLUMN handed_over_at TIMESTAMPTZ;
                CREATE INDEX outbox_overdue ON outbox (id)
                    WHERE sent_at IS NULL AND failure IS NULL AND handed_over_at IS NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX outbox_overdue; ALTER TABLE outbox DROP COLUMN handed_over_at;",
            )
            .await?;
        Ok(())
    }
}
