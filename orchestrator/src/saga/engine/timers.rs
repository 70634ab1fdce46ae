//! The engine's side of the durable timers: claiming due timers for a lease and firing one,
//! each in a transaction of its own (`crate::timers` polls and calls these).

use chrono::Utc;
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::Engine;
use super::row::{parse_step, read};
use crate::error::Error;
use crate::saga::definition::SagaType;
use crate::saga::log::{self, Timer};
use crate::saga::machine::{Machine, TimerKind};

impl<T: SagaType> Engine<T> {
    /// Claims up to `limit` due timers for this replica, for `lease`.
    pub async fn claim_timers(
        &self,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Timer>, Error> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let saga_type = self.saga_type().declaration().name;
        Ok(
            log::claim_due_timers(&self.inner.db, saga_type, limit, lease_ms, self.replica())
                .await?,
        )
    }

    /// Fires one claimed timer ([`Engine::fire`]); a timer that could not fire goes back to the
    /// poll a second later, and one whose saga the engine cannot act on parks that saga.
    pub async fn fire_or_release(&self, timer: &Timer) -> Result<bool, Error> {
        match self.fire(timer).await {
            Err(Error::Corrupt(what)) => {
                tracing::error!(saga_id = %timer.saga_id, error = %what, "a saga the engine cannot act on; parked for an operator");
                let txn = self.inner.db.begin().await?;
                log::park_broken(
                    &txn,
                    &timer.saga_id,
                    &format!("the engine cannot act on it: {what}"),
                )
                .await?;
                log::mark_fired(&txn, timer.id, self.replica()).await?;
                txn.commit().await?;
                Ok(true)
            }
            Err(err) => {
                log::release_timer(&self.inner.db, timer.id, 1_000).await?;
                Err(err)
            }
            fired => fired,
        }
    }

    /// Fires one claimed timer in a transaction of its own; `false` when another replica had
    /// fired it already.
    #[tracing::instrument(skip_all, fields(saga_id = %timer.saga_id, kind = %timer.kind))]
    pub async fn fire(&self, timer: &Timer) -> Result<bool, Error> {
        self.atomically(async |txn, pending| {
            // A saga another transaction holds longer than this is left for the next poll; the
            // timer does not hold a connection and a poller's place meanwhile.
            txn.execute_unprepared("SET LOCAL lock_timeout = '5s'").await?;
            let row = log::lock(txn, &timer.saga_id).await?;
            if !log::mark_fired(txn, timer.id, self.replica()).await? {
                return Ok(false);
            }
            let Some(row) = row.filter(|r| r.saga_type == self.saga_type().declaration().name)
            else {
                return Ok(true);
            };
            let kind = TimerKind::parse(&timer.kind)
                .ok_or_else(|| Error::Corrupt(format!("timer kind {}", timer.kind)))?;
            let late = (Utc::now() - timer.due_at).to_std().unwrap_or_default();
            pending.outcomes.timers.push((kind.as_str(), late.as_secs_f64()));
            let step = parse_step::<T::Step>(&timer.step)?;
            let mut saga = read::<T>(&row)?;
            let mut machine = Machine::new(self.saga_type(), Utc::now());
            if machine.timer(&mut saga, kind, step, timer.attempt) {
                if kind == TimerKind::StepTimeout {
                    tracing::warn!(saga_id = %row.saga_id, step = %timer.step, attempt = timer.attempt, "step timed out");
                }
                self.write(pending, row, saga, machine.effects)?;
            }
            Ok(true)
        })
        .await
    }
}
