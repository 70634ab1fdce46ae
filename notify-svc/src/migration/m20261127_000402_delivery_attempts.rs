//! The delivery log as a queue of sends: a row is written `PENDING` by the command that asks
//! for it, claimed `SENDING` for a lease in a committed transaction of its own, sent outside
//! any transaction, and its outcome recorded after (`SENT` with the provider's id, `PENDING`
//! again with a later `next_attempt_at` and the error, `FAILED` once its attempts are spent,
//! `SKIPPED` when the buyer gave nothing to send it to). The recipient is kept masked.

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
                "ALTER TABLE notification
                    ADD COLUMN user_id TEXT NOT NULL DEFAULT '',
                    ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
                    ADD COLUMN provider_id TEXT,
                    ADD COLUMN last_error TEXT,
                    ADD COLUMN next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    ADD COLUMN claimed_until TIMESTAMPTZ,
                    ADD COLUMN created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
                UPDATE notification SET user_id = recipient, created_at = sent_at,
                    updated_at = sent_at, status = 'SENT', provider_id = 'log';
                ALTER TABLE notification ALTER COLUMN sent_at DROP NOT NULL,
                    ALTER COLUMN sent_at DROP DEFAULT,
                    ADD CONSTRAINT notification_status_known CHECK (status IN
                        ('PENDING', 'SENDING', 'SENT', 'FAILED', 'SKIPPED'));
                CREATE INDEX notification_due ON notification (next_attempt_at)
                    WHERE status IN ('PENDING', 'SENDING');",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX notification_due;
                ALTER TABLE notification DROP CONSTRAINT notification_status_known;
                UPDATE notification SET sent_at = updated_at WHERE sent_at IS NULL;
                ALTER TABLE notification ALTER COLUMN sent_at SET NOT NULL,
                    ALTER COLUMN sent_at SET DEFAULT now(),
                    DROP COLUMN user_id, DROP COLUMN attempts, DROP COLUMN provider_id,
                    DROP COLUMN last_error, DROP COLUMN next_attempt_at,
                    DROP COLUMN claimed_until, DROP COLUMN created_at, DROP COLUMN updated_at;",
            )
            .await?;
        Ok(())
    }
}
