//! The stock ledger (one row per order: its fence, the record Redis is rebuilt from) and the
//! last Redis counters `STOCK_SYNC` wrote per tier.

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
                "CREATE TABLE stock_ledger (
                    order_no TEXT PRIMARY KEY,
                    tier_id BIGINT NOT NULL REFERENCES tier (id),
                    user_id TEXT NOT NULL,
                    quantity BIGINT NOT NULL CHECK (quantity >= 0),
                    state CHAR(1) NOT NULL CHECK (state IN ('D', 'C', 'R')),
                    deducted_at TIMESTAMPTZ,
                    confirmed_at TIMESTAMPTZ,
                    rolled_back_at TIMESTAMPTZ
                );
                CREATE INDEX stock_ledger_tier ON stock_ledger (tier_id, state);
                CREATE TABLE stock_sync (
                    tier_id BIGINT PRIMARY KEY REFERENCES tier (id),
                    available BIGINT NOT NULL,
                    deducted BIGINT NOT NULL,
                    confirmed BIGINT NOT NULL,
                    sold_out BOOLEAN NOT NULL,
                    synced_at TIMESTAMPTZ NOT NULL
                );",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE stock_sync; DROP TABLE stock_ledger;")
            .await?;
        Ok(())
    }
}
