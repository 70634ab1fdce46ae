//! What the saga engine counts (on the orchestrator's admin port's `/metrics`): sagas started,
//! sagas that ended (completed, compensated) or stopped for an operator (parked) by saga type,
//! state and reason, how long they took, how long each step's command waited for its reply,
//! and how late each durable timer fired. Counted once their transaction committed. Read from
//! the log every few seconds: the sagas parked and the timers due but not fired.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::metrics::{Histograms, Metrics, seconds};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub saga_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndedLabels {
    pub saga_type: &'static str,
    /// `COMPLETED`, `COMPENSATED` or `PARKED`.
    pub state: &'static str,
    /// Why it was undone (the purchase's cancel reason), `none` otherwise.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub saga_type: &'static str,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub saga_type: &'static str,
    pub step: &'static str,
    /// The reply's outcome: `OK`, `REFUSED`, `FAILED`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TimerLabels {
    pub saga_type: &'static str,
    /// `STEP_TIMEOUT`, `RETRY` or `DEADLINE`.
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct SagaMetrics {
    pub started: Family<TypeLabel, Counter>,
    pub ended: Family<EndedLabels, Counter>,
    /// From the saga's start to its end (or parking).
    pub duration: Histograms<DurationLabels>,
    /// From a step's command to its first reply.
    pub steps: Histograms<StepLabels>,
    /// Sagas parked for an operator now, by saga type (read from the log).
    pub parked: Family<TypeLabel, Gauge>,
    /// From a timer's due time to its firing (its count: the timers fired).
    pub timer_lateness: Histograms<TimerLabels>,
    /// Timers due and not fired now (read from the log): a backlog means the pollers fall
    /// behind.
    pub timers_due: Family<TypeLabel, Gauge>,
}

impl Default for SagaMetrics {
    fn default() -> Self {
        Self {
            started: Family::default(),
            ended: Family::default(),
            duration: Family::new_with_constructor(seconds),
            steps: Family::new_with_constructor(seconds),
            parked: Family::default(),
            timer_lateness: Family::new_with_constructor(seconds),
            timers_due: Family::default(),
        }
    }
}

impl SagaMetrics {
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "sagas_started",
            "Sagas started, by saga type",
            self.started.clone(),
        );
        metrics.register(
            "sagas_ended",
            "Sagas that completed, were compensated or were parked for an operator, by saga \
             type, state and reason",
            self.ended.clone(),
        );
        metrics.register(
            "saga_duration_seconds",
            "From a saga's start to its end or parking",
            self.duration.clone(),
        );
        metrics.register(
            "saga_step_seconds",
            "From a step's command to its reply, by step and outcome",
            self.steps.clone(),
        );
        metrics.register(
            "sagas_parked",
            "Sagas parked for an operator now, by saga type",
            self.parked.clone(),
        );
        metrics.register(
            "saga_timer_lateness_seconds",
            "From a durable timer's due time to its firing, by kind",
            self.timer_lateness.clone(),
        );
        metrics.register(
            "saga_timers_due",
            "Durable timers due and not fired now, by saga type",
            self.timers_due.clone(),
        );
    }

    /// Reads how many sagas of `saga_type` are parked and how many of their timers are due
    /// but not fired, every `interval` until `stop` (on the log's state and open-timer
    /// indexes).
    pub fn watch_log(
        &self,
        db: DatabaseConnection,
        saga_type: &'static str,
        interval: std::time::Duration,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let parked = self.parked.get_or_create_owned(&TypeLabel { saga_type });
        let due = self
            .timers_due
            .get_or_create_owned(&TypeLabel { saga_type });
        tokio::spawn(ticket_platform::metrics::every(interval, stop, move || {
            let (db, parked, due) = (db.clone(), parked.clone(), due.clone());
            async move {
                let counted = db
                    .query_one_raw(Statement::from_sql_and_values(
                        db.get_database_backend(),
                        "SELECT (SELECT count(*) FROM saga \
                                 WHERE state = 'PARKED' AND saga_type = $1) AS parked, \
                                (SELECT count(*) FROM saga_timer t JOIN saga s USING (saga_id) \
                                 WHERE t.fired_at IS NULL AND t.due_at <= now() \
                                   AND s.saga_type = $1) AS due",
                        [saga_type.into()],
                    ))
                    .await;
                match counted {
                    Ok(Some(row)) => {
                        if let (Ok(p), Ok(d)) = (
                            row.try_get::<i64>("", "parked"),
                            row.try_get::<i64>("", "due"),
                        ) {
                            parked.set(p);
                            due.set(d);
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::debug!(error = %err, "the saga log could not be measured");
                    }
                }
            }
        }))
    }
}

/// What one engine transaction did to the sagas it moved, counted once it committed.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub started: u64,
    /// (state, reason, seconds since the saga started).
    pub ended: Vec<(&'static str, &'static str, f64)>,
    /// (step, reply outcome, seconds from the command to the reply).
    pub steps: Vec<(&'static str, &'static str, f64)>,
    /// (timer kind, seconds from its due time to its firing).
    pub timers: Vec<(&'static str, f64)>,
}

impl Outcomes {
    pub fn append(&mut self, other: Self) {
        self.started += other.started;
        self.ended.extend(other.ended);
        self.steps.extend(other.steps);
        self.timers.extend(other.timers);
    }

    pub fn count(self, metrics: &SagaMetrics, saga_type: &'static str) {
        if self.started > 0 {
            metrics
                .started
                .get_or_create(&TypeLabel { saga_type })
                .inc_by(self.started);
        }
        for (state, reason, took) in self.ended {
            metrics
                .ended
                .get_or_create(&EndedLabels {
                    saga_type,
                    state,
                    reason,
                })
                .inc();
            metrics
                .duration
                .get_or_create(&DurationLabels { saga_type, state })
                .observe(took);
        }
        for (step, outcome, took) in self.steps {
            metrics
                .steps
                .get_or_create(&StepLabels {
                    saga_type,
                    step,
                    outcome,
                })
                .observe(took.max(0.0));
        }
        for (kind, late) in self.timers {
            metrics
                .timer_lateness
                .get_or_create(&TimerLabels { saga_type, kind })
                .observe(late);
        }
    }
}
