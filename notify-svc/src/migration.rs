//! Schema of the ticket_notify database: the platform's tables, then this service's own.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        ticket_platform::migration::platform_migrations()
    }
}
