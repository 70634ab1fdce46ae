//! A tier's `sold` is the sum of its confirmed ledger rows, no longer a counter on the tier
//! row: every confirm of a tier updated that one row and held its lock until its transaction
//! committed, so the confirms of a sale queued behind each other (and held a connection each
//! while they waited). The ledger already holds each confirmation exactly once.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE tier DROP COLUMN sold;")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE tier ADD COLUMN sold BIGINT NOT NULL DEFAULT 0;
                UPDATE tier t SET sold = COALESCE((SELECT SUM(l.quantity) FROM stock_ledger l
                    WHERE l.tier_id = t.id AND l.state = 'C'), 0);
                ALTER TABLE tier ADD CONSTRAINT tier_sold_check
                    CHECK (sold >= 0 AND sold <= total);",
            )
            .await?;
        Ok(())
    }
}
