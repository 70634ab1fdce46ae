//! `ticketctl dlq list|show|redrive`: the system's dead letters, through the orchestrator's
//! `SagaAdmin`.

use ticket_platform::grpc_client::ClientChannel;
use ticket_proto::saga::v1 as pb;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;

use crate::{OrchestratorArgs, admin};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    orchestrator: OrchestratorArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// Every dead letter, whichever service's consumer group it was.
    List,
    /// One dead letter in full, by its message id.
    Show { message_id: String },
    /// Publish a dead letter again to its original topic, with its message id.
    Redrive { message_id: String },
}

fn time(at: Option<&prost_types::Timestamp>) -> String {
    at.and_then(ticket_platform::time::instant)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Every dead letter, page by page.
async fn all(
    client: &mut SagaAdminClient<ClientChannel>,
    token: &str,
) -> anyhow::Result<Vec<pb::DeadLetter>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_dead_letters(admin(
                pb::ListDeadLettersRequest {
                    page_size: 500,
                    page_token,
                },
                token,
            )?)
            .await?
            .into_inner();
        all.extend(page.dead_letters);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

fn print_one(letter: &pb::DeadLetter) {
    println!("message {}", letter.message_id);
    println!(
        "  topic {}  tag {}  key {}",
        letter.topic, letter.tag, letter.key
    );
    println!(
        "  group {}  source {}  seen {} time(s), first {}, last {}{}",
        letter.consumer_group,
        letter.source,
        letter.times_seen,
        time(letter.received_at.as_ref()),
        time(letter.last_seen_at.as_ref()),
        if letter.redriven { "  (redriven)" } else { "" }
    );
    println!("  reason: {}", letter.reason);
    println!(
        "  properties: {}  body: {} bytes",
        letter.properties, letter.body_size
    );
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.orchestrator.connect().await?;
    let token = args.orchestrator.admin.token.as_str();
    match args.command {
        DlqCommand::List => {
            for letter in all(&mut client, token).await? {
                println!(
                    "{}  {:<20} {:<18} {:<9} x{}  {}{}",
                    letter.message_id,
                    letter.consumer_group,
                    letter.topic,
                    letter.source,
                    letter.times_seen,
                    letter.reason,
                    if letter.redriven { "  (redriven)" } else { "" }
                );
            }
        }
        DlqCommand::Show { message_id } => {
            let found: Vec<pb::DeadLetter> = all(&mut client, token)
                .await?
                .into_iter()
                .filter(|l| l.message_id == message_id)
                .collect();
            anyhow::ensure!(
                !found.is_empty(),
                "no dead letter with message id {message_id}"
            );
            for letter in &found {
                print_one(letter);
            }
        }
        DlqCommand::Redrive { message_id } => {
            let letter = client
                .redrive_dead_letter(admin(pb::RedriveDeadLetterRequest { message_id }, token)?)
                .await?
                .into_inner();
            print_one(&letter);
        }
    }
    Ok(())
}
