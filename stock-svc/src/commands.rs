//! The saga's stock commands, as they arrive over RocketMQ (`STOCK_TOPIC`) and over gRPC
//! (`Participant.Execute`): the same checks, the same handler ([`Stock::execute`]), the same
//! reply. A command that is malformed (no body, empty ids, not a stock command) can never
//! succeed: over RocketMQ it goes to the dead letters with the reason, over gRPC it gets
//! `INVALID_ARGUMENT`. A business refusal (sold out, limit, unknown tier) is a `REFUSED` reply
//! the orchestrator compensates on; a passing failure (Redis or Postgres down) is retried.

use sea_orm::DatabaseTransaction;
use ticket_platform::messaging::tag;
use ticket_platform::participant::{Answer, Batched, CommandHandler};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::reply::Body as ReplyBody;
use ticket_proto::saga::v1::{Command, StockDeducted};
use tracing::Instrument;

use crate::error::Error;
use crate::gate::{FenceOutcome, PredeductOutcome};
use crate::ledger::{self, LedgerEntry};
use crate::stock::{Effect, Record, Stock, StockRequest, StockStep};

/// The consumer group of stock-svc on `STOCK_TOPIC` (the namespace is added).
pub const CONSUMER_GROUP: &str = "stock-svc";
/// The tags stock-svc takes from `STOCK_TOPIC`.
pub const TAGS: &[&str] = &[
    tag::STOCK_DEDUCT,
    tag::STOCK_CONFIRM,
    tag::STOCK_ROLLBACK,
    tag::STOCK_SYNC,
];

/// A checked stock command and the tag it travels under on `STOCK_TOPIC`.
fn stock_request(command: &Command) -> Result<(StockRequest, &'static str), Error> {
    let (tag, step) = match &command.body {
        Some(Body::StockDeduct(deduct)) => (
            tag::STOCK_DEDUCT,
            StockStep::Prededuct {
                tier_id: deduct.tier_id,
                user_id: deduct.user_id.clone(),
                quantity: i64::from(deduct.quantity),
            },
        ),
        Some(Body::StockConfirm(confirm)) => (
            tag::STOCK_CONFIRM,
            StockStep::Confirm {
                tier_id: confirm.tier_id,
            },
        ),
        Some(Body::StockRollback(rollback)) => (
            tag::STOCK_ROLLBACK,
            StockStep::Rollback {
                tier_id: rollback.tier_id,
            },
        ),
        Some(Body::StockSync(sync)) => (
            tag::STOCK_SYNC,
            StockStep::Sync {
                tier_id: sync.tier_id,
            },
        ),
        Some(other) => {
            return Err(Error::Invalid(format!(
                "stock-svc does not handle {} commands",
                body_name(other)
            )));
        }
        None => return Err(Error::Invalid("the command has no body".into())),
    };
    Ok((StockRequest::new(&command.order_no, step)?, tag))
}

fn body_name(body: &Body) -> &'static str {
    match body {
        Body::StockDeduct(_) => tag::STOCK_DEDUCT,
        Body::StockConfirm(_) => tag::STOCK_CONFIRM,
        Body::StockRollback(_) => tag::STOCK_ROLLBACK,
        Body::StockSync(_) => tag::STOCK_SYNC,
        Body::OrderReserve(_) => tag::ORDER_RESERVE,
        Body::OrderConfirm(_) => tag::ORDER_CONFIRM,
        Body::OrderCancel(_) => tag::ORDER_CANCEL,
        Body::Notify(_) => "NOTIFY",
    }
}

/// The answer to what the handler did. A passing failure is given back, to be retried.
pub fn answer(request: &StockRequest, result: Result<Effect, Error>) -> Result<Answer, Error> {
    let order = &request.order_no;
    let tier = request.step.tier_id();
    let refused = Answer::refused;
    Ok(match result {
        Ok(Effect::Prededucted(answer)) => match answer.outcome {
            PredeductOutcome::Deducted => Answer::ok(
                format!("order {order} holds its tickets; {} left", answer.available),
                Some(ReplyBody::StockDeducted(StockDeducted {
                    unit_price_cents: answer.unit_price_cents,
                    available: answer.available,
                })),
            ),
            PredeductOutcome::SoldOut => refused(
                "SOLD_OUT",
                format!("tier {tier} has {} ticket(s) left", answer.available),
            ),
            PredeductOutcome::LimitReached => refused(
                "LIMIT_REACHED",
                format!(
                    "the buyer would hold more tickets than the limit per buyer of tier {tier}'s \
                     session, or of the tier itself"
                ),
            ),
            PredeductOutcome::SaleNotOpen => refused(
                "SALE_NOT_OPEN",
                format!("the sale of tier {tier} has not opened"),
            ),
            PredeductOutcome::SaleClosed => {
                refused("SALE_CLOSED", format!("the sale of tier {tier} has closed"))
            }
            PredeductOutcome::AlreadyRolledBack => refused(
                "ALREADY_ROLLED_BACK",
                format!("order {order} was rolled back before its deduct arrived"),
            ),
        },
        Ok(Effect::Changed(change)) => match change.outcome {
            FenceOutcome::Confirmed => Answer::ok(
                format!("{} ticket(s) of order {order} sold", change.quantity),
                None,
            ),
            FenceOutcome::RolledBack => Answer::ok(
                format!(
                    "{} ticket(s) of order {order} back in stock",
                    change.quantity
                ),
                None,
            ),
            FenceOutcome::AlreadyConfirmed => refused(
                "ALREADY_CONFIRMED",
                format!("order {order} is confirmed; its tickets cannot be returned"),
            ),
            FenceOutcome::AlreadyRolledBack => refused(
                "ALREADY_ROLLED_BACK",
                format!("order {order} was rolled back; it cannot be confirmed"),
            ),
            FenceOutcome::UnknownOrder => refused(
                "UNKNOWN_ORDER",
                format!("order {order} holds no tickets of tier {tier}"),
            ),
        },
        Ok(Effect::Synced(counters)) => Answer::ok(
            format!(
                "tier {tier}: available {}, deducted {}, confirmed {} written to Postgres",
                counters.available, counters.deducted, counters.confirmed
            ),
            None,
        ),
        Err(Error::NotFound(detail)) => refused("UNKNOWN_TIER", detail),
        Err(Error::Invalid(detail)) => refused("INVALID_ARGUMENT", detail),
        Err(other) => return Err(other),
    })
}

/// stock-svc's commands, behind both doors (`STOCK_TOPIC` and `Participant.Execute`).
pub struct StockCommands {
    pub stock: Stock,
}

impl CommandHandler for StockCommands {
    type Checked = StockRequest;

    fn check(&self, command: &Command) -> Result<(StockRequest, &'static str), String> {
        stock_request(command).map_err(|err| err.to_string())
    }

    async fn run(
        &self,
        request: &StockRequest,
        txn: &DatabaseTransaction,
    ) -> Result<Answer, String> {
        let result = self.stock.execute(request, Record::In(txn)).await;
        answer(request, result).map_err(|err| err.to_string())
    }

    /// The batch's scripts first, each under its command's span: the transaction locks no tier
    /// until they all ran, so a check of Redis against the ledger that one of them needs (which
    /// waits for the records taken, [`crate::verify`]) never waits for this batch. Then the
    /// batch's fence changes, with one statement (more when an order comes twice). A change
    /// refused (its tier was checked since its script ran) fails the batch, whose commands then
    /// run alone; one refused alone is redelivered and runs its script again
    /// ([`Stock::execute`]).
    async fn run_all(
        &self,
        commands: &[Batched<'_, StockRequest>],
        txn: &DatabaseTransaction,
    ) -> Result<Vec<Answer>, String> {
        if let [command] = commands {
            let answer = self
                .run(command.checked, txn)
                .instrument(command.span.clone());
            return Ok(vec![answer.await?]);
        }
        let mut applied = Vec::with_capacity(commands.len());
        for command in commands {
            let result = self
                .stock
                .apply(command.checked)
                .instrument(command.span.clone())
                .await;
            applied.push(result);
        }
        let entries: Vec<LedgerEntry> = applied
            .iter()
            .filter_map(|result| result.as_ref().ok()?.1.clone())
            .collect();
        let refused = ledger::record(txn, &entries)
            .await
            .map_err(|err| err.to_string())?;
        for entry in entries
            .iter()
            .filter(|e| refused.contains(&e.fence.order_no))
        {
            self.stock.refused(entry);
        }
        if !refused.is_empty() {
            return Err(format!(
                "the ledger refused the records of order(s) {}: their tier was checked against \
                 the ledger since their scripts ran",
                refused.join(", ")
            ));
        }
        let mut answers = Vec::with_capacity(commands.len());
        for (command, result) in commands.iter().zip(applied) {
            if let Ok((Effect::Synced(counters), _)) = &result {
                ledger::sync(txn, command.checked.step.tier_id(), counters)
                    .await
                    .map_err(|err| err.to_string())?;
            }
            let result = result.map(|(effect, _)| effect);
            answers.push(answer(command.checked, result).map_err(|err| err.to_string())?);
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod prop_tests;
