//! How commands reach participants. Over RocketMQ (the outbox) by default; over gRPC
//! (`Participant.Execute`) when configured with `transport = grpc`, or while the broker is
//! down. The broker counts as down while the outbox holds a row older than
//! `fallback_after` that the relay could not publish; commands decided meanwhile go over gRPC,
//! and RocketMQ carries them again as soon as the relay catches up.
//!
//! Over gRPC, the calls a saga change decided are made once its transaction committed, each on
//! a task of its own ([`Dispatcher::fan_out`]): a slow participant holds no saga row and delays
//! no other saga. Commands already in the outbox when the broker stopped taking them are handed
//! over to their participants over gRPC after the same delay ([`CommandHandover`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::future::Future;

use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::grpc_client::ClientChannel;
use ticket_platform::handover::Handover;
use ticket_platform::outbox::entity::Model as OutboxRow;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::saga::v1::{Command, Reply};
use tracing::Instrument;

use crate::saga::definition::Participant;

/// Commands to call over gRPC once the transaction that decided them committed, each with the
/// span of its step (in its saga's trace).
pub type Calls = Vec<(Participant, Command, tracing::Span)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    RocketMq,
    Grpc,
}

impl Transport {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "rocketmq" => Some(Self::RocketMq),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

/// Where the participants answer over gRPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantAddrs {
    pub stock: String,
    pub order: String,
    pub notify: String,
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    clients: HashMap<Participant, ParticipantClient<ClientChannel>>,
    token: String,
    broker_down: AtomicBool,
}

impl Dispatcher {
    /// Connects lazily to the participants (its calls counted in `channels`' metrics; each
    /// presenting `service_token`, which their `Participant.Execute` needs) and, over RocketMQ,
    /// starts watching the outbox.
    pub fn start(
        db: DatabaseConnection,
        transport: Transport,
        addrs: &ParticipantAddrs,
        service_token: &str,
        fallback_after: Duration,
        channels: &ticket_platform::grpc_client::Clients,
    ) -> Result<Self, String> {
        let mut clients = HashMap::new();
        for (participant, addr) in [
            (Participant::Stock, &addrs.stock),
            (Participant::Order, &addrs.order),
            (Participant::Notify, &addrs.notify),
        ] {
            let channel = ticket_platform::grpc_client::connect_lazy(
                participant.service(),
                addr,
                Duration::from_secs(10),
                channels,
            )?;
            clients.insert(participant, ParticipantClient::new(channel));
        }
        let inner = Arc::new(Inner {
            transport,
            clients,
            token: service_token.to_owned(),
            broker_down: AtomicBool::new(false),
        });
        if transport == Transport::RocketMq && !fallback_after.is_zero() {
            tokio::spawn(watch_outbox(Arc::downgrade(&inner), db, fallback_after));
        }
        Ok(Self { inner })
    }

    /// Whether commands go over gRPC now.
    pub fn over_grpc(&self) -> bool {
        self.inner.transport == Transport::Grpc || self.inner.broker_down.load(Ordering::Relaxed)
    }

    /// Whether a command can go through the outbox: over RocketMQ, or over gRPC by the
    /// outbox's handover while the broker is down (not on the gRPC-only transport).
    pub fn has_outbox(&self) -> bool {
        self.inner.transport == Transport::RocketMq
    }

    pub async fn execute(
        &self,
        participant: Participant,
        command: Command,
    ) -> Result<Reply, String> {
        let mut client = self
            .inner
            .clients
            .get(&participant)
            .cloned()
            .ok_or_else(|| format!("no client for {participant:?}"))?;
        let mut request = tonic::Request::new(command);
        let token = format!("Bearer {}", self.inner.token);
        request.metadata_mut().insert(
            "authorization",
            token
                .parse()
                .map_err(|_| "the participant token is not ASCII".to_owned())?,
        );
        client
            .execute(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("{participant:?}: {}", status.message()))
    }
}

/// Hands the commands the relay could not publish in time to their participants over gRPC
/// (the outbox's [`ticket_platform::handover`]); each reply goes to `on_reply` with the command
/// it answers (the engine records how the command travelled).
pub struct CommandHandover<F> {
    pub dispatcher: Dispatcher,
    pub on_reply: F,
}

impl<F, Fut> Handover for CommandHandover<F>
where
    F: Fn(Command, Reply) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn takes(&self, topic: &str) -> bool {
        Participant::of_topic(topic).is_some()
    }

    async fn deliver(&self, row: OutboxRow) -> Result<(), String> {
        let participant = Participant::of_topic(&row.topic)
            .ok_or_else(|| format!("{} is not a command topic", row.topic))?;
        let command = Command::decode(row.payload.as_slice())
            .map_err(|err| format!("outbox row {} is not a Command: {err}", row.id))?;
        let reply = self
            .dispatcher
            .execute(participant, command.clone())
            .await?;
        (self.on_reply)(command, reply).await
    }
}

impl Dispatcher {
    /// Makes each call on a task of its own and hands its reply to `on_reply` (the engine, as
    /// for a reply from RocketMQ). A call that fails is retried by its step's timeout.
    pub fn fan_out<F, Fut>(&self, calls: Calls, on_reply: F)
    where
        F: Fn(Reply) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        for (participant, command, span) in calls {
            let dispatcher = self.clone();
            let on_reply = on_reply.clone();
            let call = async move {
                match dispatcher.execute(participant, command).await {
                    Ok(reply) => {
                        if let Err(err) = on_reply(reply).await {
                            tracing::warn!(error = %err, "a gRPC reply could not be recorded; the step will time out and retry");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "a participant call failed; the step will time out and retry");
                    }
                }
            };
            tokio::spawn(call.instrument(span));
        }
    }
}

async fn watch_outbox(inner: Weak<Inner>, db: DatabaseConnection, fallback_after: Duration) {
    let sql = "SELECT COALESCE(EXTRACT(EPOCH FROM now() - MIN(created_at)), 0)::FLOAT8 AS lag \
               FROM outbox WHERE sent_at IS NULL AND failure IS NULL";
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let lag: Option<f64> = match db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
        {
            Ok(Some(row)) => row.try_get("", "lag").ok(),
            _ => None,
        };
        let Some(lag) = lag else { continue };
        let down = lag > fallback_after.as_secs_f64();
        if inner.broker_down.swap(down, Ordering::Relaxed) != down {
            if down {
                tracing::warn!(
                    lag_secs = lag,
                    "the outbox is not draining: commands go over gRPC"
                );
            } else {
                tracing::info!("the outbox drains again: commands go over RocketMQ");
            }
        }
    }
}
