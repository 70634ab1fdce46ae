//! Schema of the ticket_notify database: the platform's tables, then this service's own.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261125_000401_create_notifications;
mod m20261127_000402_delivery_attempts;
mod m20261127_000403_delivery_claims;
mod m20261128_000404_notification_trace;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = ticket_platform::migration::platform_migrations();
        migrations.push(Box::new(m20261125_000401_create_notifications::Migration));
        migrations.push(Box::new(m20261127_000402_delivery_attempts::Migration));
        migrations.push(Box::new(m20261127_000403_delivery_claims::Migration));
        migrations.push(Box::new(m20261128_000404_notification_trace::Migration));
        migrations
    }
}
