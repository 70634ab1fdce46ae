//! Schema of the ticket_stock database: the platform's tables, then this service's own.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261125_000101_create_catalog;
mod m20261125_000102_create_ledger;
mod m20261126_000103_session_per_user_limit;
mod m20261128_000104_tier_live_stamp;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = ticket_platform::migration::platform_migrations();
        migrations.push(Box::new(m20261125_000101_create_catalog::Migration));
        migrations.push(Box::new(m20261125_000102_create_ledger::Migration));
        migrations.push(Box::new(m20261126_000103_session_per_user_limit::Migration));
        migrations.push(Box::new(m20261128_000104_tier_live_stamp::Migration));
        migrations
    }
}
