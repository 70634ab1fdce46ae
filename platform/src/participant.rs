//! The participant side of the saga, shared by every service that answers the orchestrator's
//! commands. One handler, two doors:
//!
//! - [`CommandConsumer`]: a command arriving over RocketMQ runs in a transaction that holds its
//!   inbox row and the outbox row of its reply (on `SAGA_REPLY_TOPIC`, tagged with the step), so
//!   its effect and its reply commit together, once per `message_id`. Commands consumed together
//!   share that transaction ([`GroupCommit`], up to `messaging.command_batch_max`): one inbox
//!   statement, the commands' effects in order-number order ([`CommandHandler::run_all`]), one
//!   outbox statement, one commit. A batch that fails as a whole (a command's passing failure,
//!   a lost deadlock) runs its commands again one per transaction, so only the failing one is
//!   redelivered;
//! - [`ParticipantService`]: `Participant.Execute` over gRPC, the orchestrator's synchronous
//!   path, answers the same reply directly (admin token required).
//!
//! A malformed command (no saga, a step that is not a name, a body the service does not handle,
//! invalid fields) can never succeed: over RocketMQ it goes to the dead letters with the reason,
//! over gRPC it gets `INVALID_ARGUMENT`. A business refusal is a `REFUSED` reply. A passing
//! failure (a database down) is retried: redelivered over RocketMQ, a `FAILED` reply over gRPC.
//! Handlers must be idempotent: the same command (a retry under the same idempotency key) gives
//! the same answer and changes nothing twice.

use prometheus_client::metrics::histogram::Histogram;
use std::future::Future;
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use ticket_proto::saga::v1::{Command, Reply, ReplyOutcome, reply};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth::Access;
use crate::group_commit::{GroupCommit, Results};
use crate::inbox;
use crate::messaging::{HandleError, IncomingMessage, MessageHandler, OutgoingMessage, topic};
use crate::outbox;

/// What a handler answers; [`reply`] puts it in the command's envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub outcome: ReplyOutcome,
    /// Machine-readable reason of a refusal or failure (`SOLD_OUT`, `ORDER_CANCELLED`, ...).
    pub reason: String,
    /// A sentence a person can act on.
    pub detail: String,
    pub body: Option<reply::Body>,
    /// The command changed something (it is not a repeat that found its work done): what
    /// [`CommandHandler::committed`] counts.
    pub applied: bool,
}

impl Answer {
    pub fn ok(detail: impl Into<String>, body: Option<reply::Body>) -> Self {
        Self {
            outcome: ReplyOutcome::Ok,
            reason: String::new(),
            detail: detail.into(),
            body,
            applied: false,
        }
    }

    /// The answer, saying whether the command changed something.
    #[must_use]
    pub fn applied(mut self, applied: bool) -> Self {
        self.applied = applied;
        self
    }

    pub fn refused(reason: &str, detail: impl Into<String>) -> Self {
        Self {
            outcome: ReplyOutcome::Refused,
            reason: reason.to_owned(),
            detail: detail.into(),
            body: None,
            applied: false,
        }
    }
}

/// The reply to `command`.
pub fn reply(command: &Command, answer: Answer) -> Reply {
    Reply {
        saga_id: command.saga_id.clone(),
        order_no: command.order_no.clone(),
        step: command.step.clone(),
        attempt: command.attempt,
        outcome: answer.outcome as i32,
        reason: answer.reason,
        detail: answer.detail,
        body: answer.body,
    }
}

/// What every command needs: a saga, and a step that can be a tag.
pub fn check_envelope(command: &Command) -> Result<(), String> {
    if command.saga_id.trim().is_empty() {
        return Err("the command has no saga_id".into());
    }
    if command.step.is_empty()
        || command.step.len() > 64
        || !command
            .step
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "the command's step {:?} is not a name of letters, digits, '_' or '-'",
            command.step
        ));
    }
    Ok(())
}

/// A service's commands.
pub trait CommandHandler: Send + Sync + 'static {
    /// A command whose fields were checked.
    type Checked: Send + Sync;

    /// Checks the body of a command (its envelope was checked); returns it with the tag it
    /// travels under. An error means the command can never succeed.
    fn check(&self, command: &Command) -> Result<(Self::Checked, &'static str), String>;

    /// Runs the command in `txn`, which the caller commits with the reply. An error is a passing
    /// failure: the command is retried.
    fn run(
        &self,
        checked: &Self::Checked,
        txn: &DatabaseTransaction,
    ) -> impl Future<Output = Result<Answer, String>> + Send;

    /// Runs the fresh commands of a batch in `txn`, in order; one answer each. By default each
    /// in turn with [`CommandHandler::run`], under its span; a handler may share work between
    /// them (stock-svc records its batch's fence changes with one statement). An error fails the
    /// batch: its commands run again, one batch each.
    fn run_all(
        &self,
        commands: &[Batched<'_, Self::Checked>],
        txn: &DatabaseTransaction,
    ) -> impl Future<Output = Result<Vec<Answer>, String>> + Send {
        async move {
            let mut answers = Vec::with_capacity(commands.len());
            for command in commands {
                let answer = self
                    .run(command.checked, txn)
                    .instrument(command.span.clone())
                    .await?;
                answers.push(answer);
            }
            Ok(answers)
        }
    }

    /// Called once the transaction that ran the command committed, with its answer: what a
    /// command did is counted here, so a batch that fails and runs again counts nothing twice.
    fn committed(&self, _checked: &Self::Checked, _answer: &Answer) {}
}

/// A fresh command of a batch: checked, with the span its run is recorded under (a child of
/// its message's handling, in the trace the message carried).
pub struct Batched<'a, C> {
    pub checked: &'a C,
    pub span: tracing::Span,
}

fn check<H: CommandHandler>(
    handler: &H,
    command: &Command,
) -> Result<(H::Checked, &'static str), String> {
    check_envelope(command)?;
    handler.check(command)
}

/// The RocketMQ door: a consumer's message handler.
pub struct CommandConsumer<H: CommandHandler> {
    handler: Arc<H>,
    batches: GroupCommit<Arc<Consumed<H::Checked>>, HandleError>,
}

/// A checked command waiting for its batch.
struct Consumed<C> {
    message_id: String,
    command: Command,
    checked: C,
    traceparent: Option<String>,
    /// The span of the message's handling (in the trace the message carried): the command's
    /// run in its batch is recorded under it.
    span: tracing::Span,
}

/// Registers `participant_batch_commands` (how many commands each transaction of `group`'s
/// consumer took) and returns the histogram of `group`.
pub fn batch_sizes(metrics: &crate::metrics::Metrics, group: &str) -> Histogram {
    let sizes: crate::metrics::Histograms<crate::metrics::GroupLabel> =
        prometheus_client::metrics::family::Family::new_with_constructor(crate::metrics::sizes);
    let histogram = sizes.get_or_create_owned(&crate::metrics::GroupLabel {
        group: group.to_owned(),
    });
    metrics.register(
        "participant_batch_commands",
        "Commands a participant's consumer ran in one transaction, by consumer group",
        sizes,
    );
    histogram
}

/// How a participant's consumer batches its commands (`messaging.command_batch_max`,
/// `messaging.command_batch_concurrency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandBatches {
    pub max: usize,
    pub concurrency: usize,
}

impl<H: CommandHandler> CommandConsumer<H> {
    /// `group` is the consumer group's logical name (its inbox rows carry it).
    /// Each batch's size is observed in `sizes` (`participant_batch_commands`).
    pub fn new(
        handler: Arc<H>,
        db: DatabaseConnection,
        group: &str,
        batches: CommandBatches,
        sizes: Histogram,
    ) -> Self {
        let group: Arc<str> = group.into();
        let runner = Arc::clone(&handler);
        let batches = GroupCommit::start(batches.max, batches.concurrency, move |commands| {
            let (handler, db, group) = (Arc::clone(&runner), db.clone(), Arc::clone(&group));
            sizes.observe(commands.len() as f64);
            async move {
                let span = tracing::debug_span!("command batch", %group, commands = commands.len());
                run_batch(handler.as_ref(), &db, &group, commands)
                    .instrument(span)
                    .await
            }
        });
        Self { handler, batches }
    }
}

/// Runs a batch of consumed commands in one transaction: the inbox claims them, each fresh
/// command runs (in order-number order, so two batches touching the same orders lock them in
/// one order), the replies go to the outbox, and all of it commits together. A command
/// delivered before (or twice in the batch) is acknowledged without running again.
async fn run_batch<H: CommandHandler>(
    handler: &H,
    db: &DatabaseConnection,
    group: &str,
    commands: Vec<Arc<Consumed<H::Checked>>>,
) -> Result<Results<HandleError>, HandleError> {
    let retry = |err: &dyn std::fmt::Display| HandleError::Retry(err.to_string());
    let txn = db.begin().await.map_err(|err| retry(&err))?;
    let ids: Vec<&str> = commands.iter().map(|c| c.message_id.as_str()).collect();
    let mut fresh = inbox::claim(&txn, group, &ids)
        .await
        .map_err(|err| retry(&err))?;
    let mut in_order: Vec<&Consumed<H::Checked>> = commands.iter().map(Arc::as_ref).collect();
    in_order.sort_by(|a, b| a.command.order_no.cmp(&b.command.order_no));
    let mut batch: Vec<(&Consumed<H::Checked>, tracing::Span)> = Vec::with_capacity(fresh.len());
    for consumed in in_order {
        if !fresh.remove(&consumed.message_id) {
            continue;
        }
        let command = &consumed.command;
        let span = tracing::info_span!(
            parent: &consumed.span,
            "command",
            order_no = %command.order_no,
            saga_id = %command.saga_id,
            step = %command.step
        );
        batch.push((consumed, span));
    }
    let commands: Vec<Batched<'_, H::Checked>> = batch
        .iter()
        .map(|(consumed, span)| Batched {
            checked: &consumed.checked,
            span: span.clone(),
        })
        .collect();
    let answers = handler
        .run_all(&commands, &txn)
        .await
        .map_err(|err| retry(&err))?;
    if answers.len() != batch.len() {
        return Err(retry(&format!(
            "{} answers to a batch of {} commands",
            answers.len(),
            batch.len()
        )));
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut answered = Vec::with_capacity(batch.len());
    for ((consumed, _), answer) in batch.into_iter().zip(answers) {
        let command = &consumed.command;
        replies.push(
            OutgoingMessage::new(
                topic::SAGA_REPLY,
                &command.step,
                &command.order_no,
                &reply(command, answer.clone()),
            )
            .with_saga(&command.saga_id, &command.step, command.attempt)
            .with_traceparent(consumed.traceparent.clone()),
        );
        answered.push((consumed, answer));
    }
    outbox::enqueue(&txn, &replies)
        .await
        .map_err(|err| retry(&err))?;
    txn.commit().await.map_err(|err| retry(&err))?;
    if !replies.is_empty() {
        outbox::committed();
    }
    for (consumed, answer) in answered {
        handler.committed(&consumed.checked, &answer);
    }
    Ok(commands.iter().map(|_| Ok(())).collect())
}

impl<H: CommandHandler> MessageHandler for CommandConsumer<H> {
    #[tracing::instrument(skip_all, fields(order_no = %message.key, saga_id, step))]
    async fn handle(&self, message: IncomingMessage) -> Result<(), HandleError> {
        let command: Command = message.decode()?;
        let span = tracing::Span::current();
        span.record("saga_id", command.saga_id.as_str());
        span.record("step", command.step.as_str());
        let (checked, tag) = check(self.handler.as_ref(), &command).map_err(HandleError::Reject)?;
        if message.tag != tag {
            return Err(HandleError::Reject(format!(
                "tag {} does not match the command's body {tag}",
                message.tag
            )));
        }
        let consumed = Arc::new(Consumed {
            message_id: message.message_id,
            command,
            checked,
            traceparent: message.traceparent,
            span,
        });
        self.batches.submit(consumed).await
    }
}

/// The gRPC door: `Participant.Execute`.
pub struct ParticipantService<H> {
    handler: Arc<H>,
    db: DatabaseConnection,
    access: Access,
}

impl<H: CommandHandler> ParticipantService<H> {
    /// `access`: the service token opens `Execute`.
    pub fn new(handler: Arc<H>, db: DatabaseConnection, access: Access) -> Self {
        Self {
            handler,
            db,
            access,
        }
    }

    async fn run_in_transaction(&self, checked: &H::Checked) -> Result<Answer, String> {
        let txn = self.db.begin().await.map_err(|err| err.to_string())?;
        let answer = self.handler.run(checked, &txn).await?;
        txn.commit().await.map_err(|err| err.to_string())?;
        self.handler.committed(checked, &answer);
        Ok(answer)
    }
}

#[tonic::async_trait]
impl<H: CommandHandler> ticket_proto::saga::v1::participant_server::Participant
    for ParticipantService<H>
{
    #[tracing::instrument(skip_all, fields(order_no, saga_id, step))]
    async fn execute(&self, request: Request<Command>) -> Result<Response<Reply>, Status> {
        self.access.service(&request)?;
        let command = request.into_inner();
        let span = tracing::Span::current();
        span.record("order_no", command.order_no.as_str());
        span.record("saga_id", command.saga_id.as_str());
        span.record("step", command.step.as_str());
        let (checked, _) =
            check(self.handler.as_ref(), &command).map_err(Status::invalid_argument)?;
        let answer = match self.run_in_transaction(&checked).await {
            Ok(answer) => answer,
            Err(err) => {
                tracing::error!(error = %err, "command failed; the orchestrator may retry");
                Answer {
                    outcome: ReplyOutcome::Failed,
                    reason: "UNAVAILABLE".into(),
                    detail: format!("the step could not complete, retry later: {err}"),
                    body: None,
                    applied: false,
                }
            }
        };
        Ok(Response::new(reply(&command, answer)))
    }
}
