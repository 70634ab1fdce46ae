//! A buyer's limit belongs to the session: `session.per_user_limit` counts every tier of the
//! session, and a tier's own `per_user_limit` becomes an optional cap within the tier (0 = none).
//!
//! Sessions created before take the highest limit of their tiers (the default, 6, when they
//! have none), and each tier keeps its limit as its cap, so a buyer may still hold as many of
//! one tier as before; what changes is that holdings in the session's other tiers count too.

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
                "ALTER TABLE session ADD COLUMN per_user_limit INTEGER;
                UPDATE session s SET per_user_limit = COALESCE(
                    (SELECT MAX(t.per_user_limit) FROM tier t WHERE t.session_id = s.id), 6);
                ALTER TABLE session
                    ALTER COLUMN per_user_limit SET NOT NULL,
                    ADD CONSTRAINT session_per_user_limit_check CHECK (per_user_limit > 0);
                ALTER TABLE tier
                    DROP CONSTRAINT tier_per_user_limit_check,
                    ADD CONSTRAINT tier_per_user_limit_check CHECK (per_user_limit >= 0);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE tier t SET per_user_limit = s.per_user_limit FROM session s
                    WHERE s.id = t.session_id AND t.per_user_limit = 0;
                ALTER TABLE tier
                    DROP CONSTRAINT tier_per_user_limit_check,
                    ADD CONSTRAINT tier_per_user_limit_check CHECK (per_user_limit > 0);
                ALTER TABLE session DROP COLUMN per_user_limit;",
            )
            .await?;
        Ok(())
    }
}
