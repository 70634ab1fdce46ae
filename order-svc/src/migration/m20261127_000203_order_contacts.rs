//! Where a buyer's notifications go, per order, apart from the order itself: an order read for
//! any other purpose never carries its contact, and notify-svc is handed it when it sends.

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
                "CREATE TABLE order_contact (
                    order_no TEXT PRIMARY KEY REFERENCES orders (order_no),
                    email TEXT,
                    phone TEXT,
                    push_token TEXT,
                    CHECK (email IS NOT NULL OR phone IS NOT NULL OR push_token IS NOT NULL)
                )",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE order_contact")
            .await?;
        Ok(())
    }
}
