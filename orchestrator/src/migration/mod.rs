//! Schema of the ticket_orchestrator database: the platform's tables, then the saga log.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261125_000301_create_saga_log;
mod m20261126_000302_typed_saga_log;
mod m20261127_000303_open_timers_by_saga;
mod m20261127_000304_cancellation_notices;
mod m20261128_000305_saga_trace;
mod m20261128_000306_one_notify_step;
mod step_names;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations = ticket_platform::migration::platform_migrations();
        migrations.push(Box::new(m20261125_000301_create_saga_log::Migration));
        migrations.push(Box::new(m20261126_000302_typed_saga_log::Migration));
        migrations.push(Box::new(m20261127_000303_open_timers_by_saga::Migration));
        migrations.push(Box::new(m20261127_000304_cancellation_notices::Migration));
        migrations.push(Box::new(m20261128_000305_saga_trace::Migration));
        migrations.push(Box::new(m20261128_000306_one_notify_step::Migration));
        migrations
    }
}
