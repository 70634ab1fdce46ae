//! `ticketctl saga list|show|retry|compensate|skip`: the orchestrator's `SagaAdmin` from a
//! terminal.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use ticket_platform::grpc_client::ClientChannel;
use ticket_proto::saga::v1 as pb;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;

use crate::{OrchestratorArgs, admin};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    orchestrator: OrchestratorArgs,
    #[command(subcommand)]
    command: SagaCommand,
}

#[derive(clap::Subcommand)]
pub enum SagaCommand {
    /// List sagas, optionally in one state (RUNNING, WAITING, COMPENSATING, COMPLETED,
    /// COMPENSATED, PARKED).
    List {
        #[arg(long, default_value = "")]
        state: String,
        #[arg(long, default_value_t = 50)]
        limit: i32,
    },
    /// One saga with its step history, by saga id or order number.
    Show { key: String },
    /// Retry a parked saga's current step, with a fresh retry budget.
    Retry {
        saga_id: String,
        /// Why (recorded in the saga's history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Run every compensation a saga that has not been paid still owes.
    Compensate {
        saga_id: String,
        /// Why (recorded in the saga's history).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Mark a parked saga's step done by hand and move the saga on.
    Skip {
        saga_id: String,
        /// What was done by hand (required; recorded in the saga's history).
        #[arg(long)]
        reason: String,
    },
}

/// Every saga, page by page, without step histories.
pub async fn all(
    client: &mut SagaAdminClient<ClientChannel>,
    token: &str,
) -> anyhow::Result<Vec<pb::Saga>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sagas(admin(
                pb::ListSagasRequest {
                    state: String::new(),
                    page_size: 500,
                    page_token,
                },
                token,
            )?)
            .await?
            .into_inner();
        all.extend(page.sagas);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(ticket_platform::time::instant)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".into())
}

fn print_saga(saga: &pb::Saga) {
    println!(
        "saga {}  order {}  {}  step {}  version {}",
        saga.saga_id, saga.order_no, saga.state, saga.current_step, saga.version
    );
    if saga.deadline.is_some() {
        println!("  payment deadline {}", time(saga.deadline.as_ref()));
    }
    if saga.passed_pivot {
        println!("  paid: only goes forward");
    }
    for step in &saga.history {
        println!(
            "  {:<16} #{}  sent {}  replied {}  {}  {}",
            step.step,
            step.attempt,
            time(step.sent_at.as_ref()),
            time(step.replied_at.as_ref()),
            if step.outcome.is_empty() {
                "(no reply)"
            } else {
                &step.outcome
            },
            step.reply
        );
    }
    for action in &saga.actions {
        println!(
            "  operator {:<10} at {}  on {}  reason: {}",
            action.action,
            time(action.at.as_ref()),
            action.step,
            action.reason
        );
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.orchestrator.connect().await?;
    let token = args.orchestrator.admin.token.as_str();
    match args.command {
        SagaCommand::List { state, limit } => {
            let page = client
                .list_sagas(admin(
                    pb::ListSagasRequest {
                        state,
                        page_size: limit,
                        page_token: String::new(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            for saga in &page.sagas {
                println!(
                    "{}  {}  {:<16} {}",
                    saga.saga_id, saga.order_no, saga.state, saga.current_step
                );
            }
            if !page.next_page_token.is_empty() {
                println!("(more; raise --limit)");
            }
        }
        SagaCommand::Show { key } => {
            let by = if key.starts_with('T') && key.len() == 21 {
                pb::get_saga_request::Key::OrderNo(key)
            } else {
                pb::get_saga_request::Key::SagaId(key)
            };
            let saga = client
                .get_saga(admin(pb::GetSagaRequest { key: Some(by) }, token)?)
                .await?
                .into_inner();
            print_saga(&saga);
        }
        SagaCommand::Retry { saga_id, reason } => {
            let saga = client
                .retry_saga(admin(pb::SagaRef { saga_id, reason }, token)?)
                .await?
                .into_inner();
            print_saga(&saga);
        }
        SagaCommand::Compensate { saga_id, reason } => {
            let saga = client
                .compensate_saga(admin(pb::SagaRef { saga_id, reason }, token)?)
                .await?
                .into_inner();
            print_saga(&saga);
        }
        SagaCommand::Skip { saga_id, reason } => {
            let saga = client
                .skip_step(admin(pb::SagaRef { saga_id, reason }, token)?)
                .await?
                .into_inner();
            print_saga(&saga);
        }
    }
    Ok(())
}

/// The state of the saga of each of `order_nos`, once none is still moving (each COMPLETED,
/// COMPENSATED or PARKED) or `within` has passed.
pub async fn wait_until_settled(
    sagas: &mut SagaAdminClient<ClientChannel>,
    token: &str,
    order_nos: &[String],
    within: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    let ours: HashSet<&str> = order_nos.iter().map(String::as_str).collect();
    let deadline = Instant::now() + within;
    loop {
        let states: HashMap<String, String> = all(sagas, token)
            .await
            .context("list the sagas")?
            .into_iter()
            .filter(|s| ours.contains(s.order_no.as_str()))
            .map(|s| (s.order_no, s.state))
            .collect();
        let settled = states.len() == ours.len()
            && states
                .values()
                .all(|s| matches!(s.as_str(), "COMPLETED" | "COMPENSATED" | "PARKED"));
        if settled || Instant::now() > deadline {
            return Ok(states);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
