//! `stock-svc` serves gRPC; `stock-svc migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sea_orm_migration::MigratorTrait;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match stock_svc::Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("stock-svc: {errors}");
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
            tracing::error!(error = %err, "stock-svc failed");
            eprintln!("stock-svc: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: stock_svc::Config) -> Result<(), Box<dyn std::error::Error>> {
    let app = stock_svc::Application::build(config).await?;
    println!("stock-svc listening on {}", app.local_addr());
    app.run_until_stopped(ticket_platform::shutdown::signal())
        .await?;
    Ok(())
}

async fn migrate(config: &stock_svc::Config) -> Result<(), Box<dyn std::error::Error>> {
    let db = ticket_platform::db::connect(&config.service.database).await?;
    stock_svc::migration::Migrator::up(&db, None).await?;
    println!("stock-svc: database migrated");
    Ok(())
}
