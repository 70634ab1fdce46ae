//! Dead letters: messages a handler rejected, with the reason, kept for inspection and redrive.

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
                "CREATE TABLE dead_letter (
                    id BIGSERIAL PRIMARY KEY,
                    consumer_group TEXT NOT NULL,
                    message_id TEXT NOT NULL,
                    topic TEXT NOT NULL,
                    tag TEXT NOT NULL,
                    message_key TEXT NOT NULL,
                    reason TEXT NOT NULL,
                    payload BYTEA NOT NULL,
                    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    redriven_at TIMESTAMPTZ,
                    UNIQUE (consumer_group, message_id)
                )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE dead_letter")
            .await?;
        Ok(())
    }
}
