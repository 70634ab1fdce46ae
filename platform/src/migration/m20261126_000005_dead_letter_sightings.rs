//! A dead letter is one record however often it is seen: first and last seen, how many times,
//! how it arrived (a handler's rejection or the broker's `%DLQ%`), and its properties.

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
                "ALTER TABLE dead_letter
                    ADD COLUMN times_seen INTEGER NOT NULL DEFAULT 1,
                    ADD COLUMN last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    ADD COLUMN source TEXT NOT NULL DEFAULT 'REJECTED'
                        CHECK (source IN ('REJECTED', 'DLQ')),
                    ADD COLUMN properties JSONB NOT NULL DEFAULT '{}'::jsonb;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE dead_letter DROP COLUMN times_seen, DROP COLUMN last_seen_at,
                    DROP COLUMN source, DROP COLUMN properties;",
            )
            .await?;
        Ok(())
    }
}
