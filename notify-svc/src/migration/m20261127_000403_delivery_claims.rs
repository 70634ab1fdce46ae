//! Each claim of a notification gets a number that only grows (`claims`): an attempt's outcome
//! is recorded only while its claim is the last, even after an operator's retry reset the
//! attempts. `LOGGED`, the status replicas of the previous version write, stays allowed while
//! they are replaced (it reads as sent on the log channel).

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
                "ALTER TABLE notification ADD COLUMN claims INTEGER NOT NULL DEFAULT 0,
                    DROP CONSTRAINT notification_status_known,
                    ADD CONSTRAINT notification_status_known CHECK (status IN
                        ('PENDING', 'SENDING', 'SENT', 'FAILED', 'SKIPPED', 'LOGGED'));
                UPDATE notification SET claims = attempts;",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE notification SET status = 'SENT' WHERE status = 'LOGGED';
                ALTER TABLE notification DROP COLUMN claims,
                    DROP CONSTRAINT notification_status_known,
                    ADD CONSTRAINT notification_status_known CHECK (status IN
                        ('PENDING', 'SENDING', 'SENT', 'FAILED', 'SKIPPED'));",
            )
            .await?;
        Ok(())
    }
}
