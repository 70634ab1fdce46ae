//! The catalog: show -> session -> ticket tier, with the rules the database itself enforces.

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
                "CREATE TABLE show (
                    id BIGSERIAL PRIMARY KEY,
                    title TEXT NOT NULL,
                    venue TEXT NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
                );
                CREATE TABLE session (
                    id BIGSERIAL PRIMARY KEY,
                    show_id BIGINT NOT NULL REFERENCES show (id),
                    starts_at TIMESTAMPTZ NOT NULL,
                    sale_opens_at TIMESTAMPTZ NOT NULL,
                    sale_closes_at TIMESTAMPTZ NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    CHECK (sale_opens_at < sale_closes_at)
                );
                CREATE INDEX session_show ON session (show_id);
                CREATE TABLE tier (
                    id BIGSERIAL PRIMARY KEY,
                    session_id BIGINT NOT NULL REFERENCES session (id),
                    name TEXT NOT NULL,
                    price_cents BIGINT NOT NULL CHECK (price_cents >= 0),
                    total BIGINT NOT NULL CHECK (total > 0),
                    per_user_limit INTEGER NOT NULL CHECK (per_user_limit > 0),
                    sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0 AND sold <= total),
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    UNIQUE (session_id, name)
                );",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE tier; DROP TABLE session; DROP TABLE show;")
            .await?;
        Ok(())
    }
}
