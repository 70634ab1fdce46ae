//! The transactional outbox: rows written in the caller's transaction, published by the relay.

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
                "CREATE TABLE outbox (
                    id BIGSERIAL PRIMARY KEY,
                    message_id UUID NOT NULL UNIQUE,
                    topic TEXT NOT NULL,
                    tag TEXT NOT NULL,
                    message_key TEXT NOT NULL,
                    saga_id TEXT,
                    step TEXT,
                    attempt INTEGER NOT NULL DEFAULT 0,
                    traceparent TEXT,
                    payload BYTEA NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    sent_at TIMESTAMPTZ,
                    failure TEXT
                );
                CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL AND failure IS NULL;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE outbox")
            .await?;
        Ok(())
    }
}
