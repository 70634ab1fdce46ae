//! `orchestrator` serves gRPC; `orchestrator migrate` only migrates its database (a Kubernetes Job).
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ticket_platform::app::main::<_, orchestrator::migration::Migrator, _, _>(
        "orchestrator",
        orchestrator::Config::from_env,
        |config| &config.service,
        |config| async move {
            let stop = ticket_platform::shutdown::signal();
            let app = orchestrator::Application::build(config).await?;
            println!("orchestrator listening on {}", app.local_addr());
            app.run_until_stopped(stop).await
        },
    )
    .await
}
