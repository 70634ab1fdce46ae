//! `order-svc` serves gRPC; `order-svc migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]
// The futures of the gRPC server and the RocketMQ client nest deeply; computing their layout
// needs more than the default query depth on a clean build.
#![recursion_limit = "512"]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ticket_platform::binary::main::<_, order_svc::migration::Migrator, _, _, order_svc::BuildError>(
        "order-svc",
        order_svc::Config::from_env,
        || ticket_platform::db::DatabaseConfig::from_env(order_svc::ENV_PREFIX, "ticket_order"),
        |config| &config.service,
        |config| async move {
            let stop = ticket_platform::shutdown::signal();
            let app = order_svc::Application::build(config).await?;
            println!("order-svc listening on {}", app.local_addr());
            Ok(app.run_until_stopped(stop).await?)
        },
    )
    .await
}
