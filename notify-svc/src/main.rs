//! `notify-svc` serves gRPC; `notify-svc migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]
// The futures of the gRPC server and the RocketMQ client nest deeply; computing their layout
// needs more than the default query depth on a clean build.
#![recursion_limit = "512"]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ticket_platform::binary::main::<
        _,
        notify_svc::migration::Migrator,
        _,
        _,
        ticket_platform::app::StartError,
    >(
        "notify-svc",
        notify_svc::Config::from_env,
        || ticket_platform::db::DatabaseConfig::from_env(notify_svc::ENV_PREFIX, "ticket_notify"),
        |config| &config.service,
        |config| async move {
            let stop = ticket_platform::shutdown::signal();
            let app = notify_svc::Application::build(config).await?;
            println!("notify-svc listening on {}", app.local_addr());
            app.run_until_stopped(stop).await
        },
    )
    .await
}
