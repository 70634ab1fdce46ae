//! `notify-svc` serves gRPC; `notify-svc migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sea_orm_migration::MigratorTrait;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match notify_svc::Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("notify-svc: {errors}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = ticket_platform::telemetry::init(&config.service.telemetry);
    let result = if std::env::args().nth(1).as_deref() == Some("migrate") {
        migrate(&config).await
    } else {
        serve(config).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "notify-svc failed");
            eprintln!("notify-svc: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: notify_svc::Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = notify_svc::Application::build(config).await?;
    println!("notify-svc listening on {}", app.local_addr());
    app.run_until_stopped(ticket_platform::shutdown::signal())
        .await?;
    Ok(())
}

async fn migrate(config: &notify_svc::Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = ticket_platform::db::connect(&config.service.database).await?;
    notify_svc::migration::Migrator::up(&db, None).await?;
    println!("notify-svc: database migrated");
    Ok(())
}
