//! The delivery log: one row per (order, channel) notification.

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
                "CREATE TABLE notification (
                    id BIGSERIAL PRIMARY KEY,
                    order_no TEXT NOT NULL,
                    channel TEXT NOT NULL CHECK (channel IN ('SMS', 'EMAIL', 'PUSH')),
                    recipient TEXT NOT NULL,
                    template TEXT NOT NULL,
                    body TEXT NOT NULL,
                    status TEXT NOT NULL,
                    sent_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    UNIQUE (order_no, channel, template)
                );",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE notification;")
            .await?;
        Ok(())
    }
}
