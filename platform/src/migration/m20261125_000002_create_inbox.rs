//! The inbox: one row per (consumer group, message_id) whose effect has happened.

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
                "CREATE TABLE inbox (
                    consumer_group TEXT NOT NULL,
                    message_id TEXT NOT NULL,
                    handled_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    PRIMARY KEY (consumer_group, message_id)
                )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE inbox")
            .await?;
        Ok(())
    }
}
