//! `stock-svc` serves gRPC; `stock-svc migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]
// The futures of the gRPC server and the RocketMQ client nest deeply; computing their layout
// needs more than the default query depth on a clean build.
#![recursion_limit = "512"]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ticket_platform::binary::main::<_, stock_svc::migration::Migrator, _, _, stock_svc::BuildError>(
        "stock-svc",
        stock_svc::Config::from_env,
        || ticket_platform::db::DatabaseConfig::from_env(stock_svc::ENV_PREFIX, "ticket_stock"),
        |config| &config.service,
        |config| async move {
            let stop = ticket_platform::shutdown::signal();
            let app = stock_svc::Application::build(config).await?;
            println!("stock-svc listening on {}", app.local_addr());
            Ok(app.run_until_stopped(stop).await?)
        },
    )
    .await
}
