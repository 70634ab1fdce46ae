//! Tables every service shares (outbox, inbox, dead letters). A service lists
//! [`platform_migrations`] first in its own `Migrator`.

use sea_orm_migration::MigrationTrait;

mod m20261125_000001_create_outbox;
mod m20261125_000002_create_inbox;
mod m20261125_000003_create_dead_letter;
mod m20261126_000004_outbox_handover;
mod m20261126_000005_dead_letter_sightings;

pub fn platform_migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261125_000001_create_outbox::Migration),
        Box::new(m20261125_000002_create_inbox::Migration),
        Box::new(m20261125_000003_create_dead_letter::Migration),
        Box::new(m20261126_000004_outbox_handover::Migration),
        Box::new(m20261126_000005_dead_letter_sightings::Migration),
    ]
}
