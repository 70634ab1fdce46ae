//! `tier.live_stamp`: the stamp of the tier's last load into Redis or check of Redis against the
//! ledger. Redis keeps the same stamp beside the tier; a fence change's record in the ledger
//! names the stamp its script saw and is refused when the tier's stamp here is another one, so
//! a record on its way across a check (Redis restarted, a tier rebuilt) runs again instead of
//! landing behind it. Tiers of before have none: their first command checks them.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE tier ADD COLUMN live_stamp TEXT;")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE tier DROP COLUMN live_stamp;")
            .await?;
        Ok(())
    }
}
