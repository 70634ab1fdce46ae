//! The `main` of every service binary: its configuration, its telemetry, and what the
//! command line asks of it (`migrate`, `settings`, or serving until it is stopped).

use std::future::Future;

use sea_orm_migration::MigratorTrait;

use crate::app::StartError;
use crate::service::ServiceConfig;

/// Loads the configuration (every problem reported at once, exit code 2), sets up telemetry,
/// then `<binary> migrate` only migrates the database (a Kubernetes Job; it reads only the
/// database settings, from `database`), `<binary> settings` prints every setting it reads (its environment
/// variable and default) and `<binary>` serves until SIGTERM or Ctrl-C. A variable of the
/// service's prefix that it does not read (a misspelt setting) is warned of at start.
pub async fn main<C, M, Serve, Served, E>(
    name: &str,
    load: impl FnOnce() -> Result<C, crate::config::ConfigErrors>,
    database: impl FnOnce() -> Result<crate::db::DatabaseConfig, crate::config::ConfigErrors>,
    service_config: impl Fn(&C) -> &ServiceConfig,
    serve: Serve,
) -> std::process::ExitCode
where
    M: MigratorTrait,
    Serve: FnOnce(C) -> Served,
    Served: Future<Output = Result<(), E>>,
    E: std::fmt::Display + From<StartError>,
{
    let command = std::env::args().nth(1);
    if command.as_deref() == Some("migrate") {
        return migrate_only::<M>(name, database).await;
    }
    let loaded = load();
    if command.as_deref() == Some("settings") {
        for setting in crate::config::settings_read().settings {
            println!("{}={}", setting.env, setting.default);
        }
        return std::process::ExitCode::SUCCESS;
    }
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{name}: {errors}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = crate::telemetry::init(&service_config(&config).telemetry);
    for unknown in crate::config::settings_read().unknown {
        tracing::warn!(
            setting = %unknown,
            "{name} does not read this setting: misspelt, or it belongs to a choice not made \
             (a channel's kind); `{name} settings` lists what it reads"
        );
    }
    match serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "{name} failed");
            eprintln!("{name}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `<binary> migrate`: the database settings, telemetry to the log, the migration.
async fn migrate_only<M: MigratorTrait>(
    name: &str,
    database: impl FnOnce() -> Result<crate::db::DatabaseConfig, crate::config::ConfigErrors>,
) -> std::process::ExitCode {
    let config = match database() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{name}: {errors}");
            return std::process::ExitCode::from(2);
        }
    };
    let _telemetry = crate::telemetry::init(&crate::telemetry::TelemetryConfig {
        service_name: name.to_owned(),
        log: "info".into(),
        otlp_endpoint: String::new(),
    });
    match migrate::<M>(&config).await {
        Ok(()) => {
            println!("{name}: database migrated");
            std::process::ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!(error = %err, "{name} failed to migrate");
            eprintln!("{name}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate<M: MigratorTrait>(config: &crate::db::DatabaseConfig) -> Result<(), StartError> {
    let db = crate::db::connect(config).await?;
    crate::db::migrate::<M>(&db, config).await?;
    db.close().await?;
    Ok(())
}
