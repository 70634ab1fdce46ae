//! `orchestrator` serves gRPC; `orchestrator migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]
// The futures of the gRPC server and the RocketMQ client nest deeply; computing their layout
// needs more than the default query depth on a clean build.
#![recursion_limit = "512"]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ticket_platform::binary::main::<
        _,
        orchestrator::migration::Migrator,
        _,
        _,
        orchestrator::BuildError,
    >(
        "orchestrator",
        orchestrator::Config::from_env,
        || {
            ticket_platform::db::DatabaseConfig::from_env(
                orchestrator::ENV_PREFIX,
                "ticket_orchestrator",
            )
        },
        |config| &config.service,
        |config| async move {
            let stop = ticket_platform::shutdown::signal();
            let app = orchestrator::Application::build(config).await?;
            println!("orchestrator listening on {}", app.local_addr());
            Ok(app.run_until_stopped(stop).await?)
        },
    )
    .await
}
