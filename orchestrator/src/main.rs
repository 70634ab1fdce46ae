//! `orchestrator` serves gRPC; `orchestrator migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sea_orm_migration::MigratorTrait;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match orchestrator::Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("orchestrator: {errors}");
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
            tracing::error!(error = %err, "orchestrator failed");
            eprintln!("orchestrator: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: orchestrator::Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = orchestrator::Application::build(config).await?;
    println!("orchestrator listening on {}", app.local_addr());
    app.run_until_stopped(ticket_platform::shutdown::signal())
        .await?;
    Ok(())
}

async fn migrate(config: &orchestrator::Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = ticket_platform::db::connect(&config.service.database).await?;
    orchestrator::migration::Migrator::up(&db, None).await?;
    println!("orchestrator: database migrated");
    Ok(())
}
