//! Schema of the ticket_order database: the platform's tables, then this service's own.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261125_000201_create_orders;
mod m20261126_000202_pending_orders;
mod m20261127_000203_order_contacts;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = ticket_platform::migration::platform_migrations();
        migrations.push(Box::new(m20261125_000201_create_orders::Migration));
        migrations.push(Box::new(m20261126_000202_pending_orders::Migration));
        migrations.push(Box::new(m20261127_000203_order_contacts::Migration));
        migrations
    }
}
