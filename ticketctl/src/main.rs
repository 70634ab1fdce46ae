//! `ticketctl`: the operator's CLI of the ticket platform.
#![forbid(unsafe_code)]
// The futures of the gRPC server and the RocketMQ client nest deeply; computing their layout
// needs more than the default query depth on a clean build.
#![recursion_limit = "512"]

mod bench;
mod buyers;
mod catalog;
mod demo;
mod dlq;
mod metrics;
mod notify;
mod saga;

use clap::{Parser, Subcommand};
use ticket_platform::grpc_client::ClientChannel;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;
use tonic::transport::Channel;
use tracing::Instrument;

#[derive(Parser)]
#[command(name = "ticketctl", about = "Operate the ticket platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure a part of the system on this machine.
    Bench {
        #[command(subcommand)]
        target: bench::Target,
    },
    /// Inspect and steer sagas through the orchestrator's SagaAdmin.
    Saga(saga::Args),
    /// A short flash sale against the running services, and what happened.
    Demo(demo::Args),
    /// The system's dead letters (every consumer group's), through the orchestrator.
    Dlq(dlq::Args),
    /// Notifications that spent their attempts, and sending one again, through notify-svc.
    Notify(notify::Args),
    /// A buyer's token, signed as a gateway would sign it (for grpcurl and tests).
    Token(TokenArgs),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The buyer's user id (the token's `sub`).
    user_id: String,
    /// How long the token is valid.
    #[arg(long, default_value_t = 3600)]
    valid_secs: u64,
    #[command(flatten)]
    keys: buyers::Keys,
}

/// Where the orchestrator's `SagaAdmin` answers, and the token it needs.
#[derive(clap::Args)]
pub struct OrchestratorArgs {
    /// The orchestrator's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50053", global = true)]
    addr: String,
    #[command(flatten)]
    pub admin: AdminToken,
}

/// The admin token a call presents.
#[derive(clap::Args)]
pub struct AdminToken {
    /// The admin token (`TICKET_ADMIN_TOKEN`).
    #[arg(
        long,
        env = "TICKET_ADMIN_TOKEN",
        default_value = "dev-admin-token",
        global = true,
        hide_env_values = true
    )]
    pub token: String,
}

impl OrchestratorArgs {
    pub async fn connect(&self) -> anyhow::Result<SagaAdminClient<ClientChannel>> {
        Ok(SagaAdminClient::new(
            traced("orchestrator", &self.addr).await?,
        ))
    }
}

/// A channel to `peer` at `addr`, connected now; each call carries the command's trace (its
/// `traceparent`), so the services' logs of an operator's action name one trace id.
pub async fn traced(peer: &'static str, addr: &str) -> anyhow::Result<ClientChannel> {
    use anyhow::Context;
    let channel = endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach {peer} at {addr}"))?;
    Ok(ticket_platform::grpc_client::over(
        peer,
        channel,
        &ticket_platform::metrics::GrpcMetrics::default(),
    ))
}

/// Where a command connects: `http://`, or `https://` trusting the CA in `TICKET_TLS_CA_FILE`
/// and presenting `TICKET_TLS_CERT_FILE` and `TICKET_TLS_KEY_FILE` when the server asks for a
/// client certificate (docs/SECURITY.md).
pub fn endpoint(addr: &str) -> anyhow::Result<tonic::transport::Endpoint> {
    use anyhow::Context;
    let endpoint = Channel::from_shared(addr.to_owned())?;
    if !addr.starts_with("https://") {
        return Ok(endpoint);
    }
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let tls = ticket_platform::transport::TlsFiles {
        cert_file: var("TICKET_TLS_CERT_FILE"),
        key_file: var("TICKET_TLS_KEY_FILE"),
        client_ca_file: String::new(),
        ca_file: var("TICKET_TLS_CA_FILE"),
    }
    .client()
    .map_err(anyhow::Error::msg)?
    .with_context(|| {
        format!("{addr} is https: set TICKET_TLS_CA_FILE to the CA that signed its certificate")
    })?;
    Ok(endpoint.tls_config(tls)?)
}

/// `message` with `authorization: Bearer <token>`.
pub fn admin<T>(message: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    use anyhow::Context;
    let admin = buyers::Bearer::new(token).context("the admin token")?;
    Ok(admin.on(message))
}

/// The root span of an operator's command: its calls continue its trace.
fn command_span(command: &'static str) -> tracing::Span {
    tracing::info_span!("ticketctl", command)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry =
        ticket_platform::telemetry::init(&ticket_platform::telemetry::TelemetryConfig {
            service_name: "ticketctl".into(),
            // The RocketMQ client warns of routes not yet known and of its own shutdown, which
            // is noise on an operator's terminal; RUST_LOG still turns it on.
            log: "warn,rocketmq_client_rust=error".into(),
            otlp_endpoint: String::new(),
        });
    let result = match cli.command {
        Command::Bench { target } => bench::run(target).await,
        Command::Saga(args) => saga::run(args).instrument(command_span("saga")).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Dlq(args) => dlq::run(args).instrument(command_span("dlq")).await,
        Command::Notify(args) => notify::run(args).instrument(command_span("notify")).await,
        Command::Token(args) => args
            .keys
            .buyer_token(
                &args.user_id,
                std::time::Duration::from_secs(args.valid_secs),
            )
            .map(|token| println!("{token}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ticketctl: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
