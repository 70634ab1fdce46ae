//! What one engine transaction writes, gathered while the step machine moves its sagas and
//! written at its end with one statement: the sagas' rows, their history, their timers and the
//! outbox's commands; plus the gRPC calls made once it committed.

use sea_orm::DatabaseTransaction;
use ticket_platform::messaging::OutgoingMessage;

use crate::dispatch::Calls;
use crate::error::Error;
use crate::saga::log::{self, NewTimer, SagaRow, Sent};
use crate::saga::metrics::Outcomes;

#[derive(Default)]
pub(super) struct Pending {
    pub calls: Calls,
    pub sent: Vec<Sent>,
    pub messages: Vec<OutgoingMessage>,
    pub timers: Vec<NewTimer>,
    pub sagas: Vec<SagaRow>,
    /// What to count once the transaction committed.
    pub outcomes: Outcomes,
}

impl Pending {
    /// Takes on what `other` gathered (a saga moved on its own, then kept).
    pub fn append(&mut self, other: Pending) {
        self.calls.extend(other.calls);
        self.sent.extend(other.sent);
        self.messages.extend(other.messages);
        self.timers.extend(other.timers);
        self.sagas.extend(other.sagas);
        self.outcomes.append(other.outcomes);
    }

    /// Writes what was gathered in `txn` on behalf of `replica` (the timers an ended saga
    /// leaves are marked fired by it); the calls stay for after the commit.
    pub async fn write(&mut self, txn: &DatabaseTransaction, replica: &str) -> Result<(), Error> {
        let moved = log::Moved {
            sent: &std::mem::take(&mut self.sent),
            timers: &std::mem::take(&mut self.timers),
            sagas: &std::mem::take(&mut self.sagas),
            messages: &std::mem::take(&mut self.messages),
        };
        log::write(txn, &moved, replica).await?;
        Ok(())
    }
}
