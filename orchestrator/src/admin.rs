//! `SagaAdmin`: operators list sagas by state, inspect one with its step history and their own
//! actions, retry a parked saga, compensate one that has not passed its pivot, skip a parked
//! step done by hand, and list and redrive the dead letters. Every call needs the admin token.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::time::timestamp;
use ticket_proto::saga::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::{Error, identifier};
use crate::saga::engine::{Engine, OperatorAction};
use crate::saga::log::{self, SagaRow};
use crate::saga::machine::State;
use crate::saga::purchase::Purchase;

pub struct SagaAdminApi {
    pub db: DatabaseConnection,
    pub engine: Engine<Purchase>,
    pub access: ticket_platform::auth::Access,
}

/// The longest reason an operator may give.
const MAX_REASON_LEN: usize = 500;

impl SagaAdminApi {
    async fn message(&self, saga: SagaRow, with_history: bool) -> Result<pb::Saga, Error> {
        let (history, actions) = if with_history {
            let history = log::history(&self.db, &saga.saga_id)
                .await?
                .into_iter()
                .map(|step| pb::SagaStep {
                    step: step.step,
                    attempt: u32::try_from(step.attempt).unwrap_or(0),
                    command: format!("{} ({})", step.command, step.transport),
                    reply: step.detail.unwrap_or_default(),
                    outcome: match (step.outcome, step.reason) {
                        (Some(outcome), Some(reason)) if !reason.is_empty() => {
                            format!("{outcome} {reason}")
                        }
                        (Some(outcome), _) => outcome,
                        (None, _) => String::new(),
                    },
                    sent_at: Some(timestamp(step.sent_at)),
                    replied_at: step.replied_at.map(timestamp),
                })
                .collect();
            let actions = log::actions(&self.db, &saga.saga_id)
                .await?
                .into_iter()
                .map(|action| pb::OperatorAction {
                    action: action.action,
                    step: action.step,
                    reason: action.reason,
                    at: Some(timestamp(action.at)),
                })
                .collect();
            (history, actions)
        } else {
            (Vec::new(), Vec::new())
        };
        let current_step = match &saga.incident {
            Some(incident) => format!("{} (incident: {incident})", saga.step),
            None => saga.step.clone(),
        };
        Ok(pb::Saga {
            saga_id: saga.saga_id,
            order_no: saga.order_no,
            saga_type: saga.saga_type,
            state: saga.state,
            current_step,
            deadline: saga.deadline.map(timestamp),
            version: saga.version,
            history,
            created_at: Some(timestamp(saga.created_at)),
            updated_at: Some(timestamp(saga.updated_at)),
            actions,
            incident: saga.incident.unwrap_or_default(),
            passed_pivot: saga.passed_pivot,
        })
    }

    /// Runs an operator's action and answers the saga as it is now.
    async fn operate(
        &self,
        request: Request<pb::SagaRef>,
        action: OperatorAction,
    ) -> Result<Response<pb::Saga>, Status> {
        self.access.admin(&request)?;
        let request = request.into_inner();
        let id = saga_id(&request.saga_id)?;
        let reason = request.reason.trim();
        if reason.len() > MAX_REASON_LEN {
            return Err(
                Error::Invalid(format!("reason must be at most {MAX_REASON_LEN} bytes")).into(),
            );
        }
        if action == OperatorAction::Skip && reason.is_empty() {
            return Err(Error::Invalid(
                "say why the step may be skipped (reason): what was done by hand".into(),
            )
            .into());
        }
        let reason = if reason.is_empty() {
            "(no reason given)"
        } else {
            reason
        };
        if let Err(refused) = self.engine.operate(&id, action, reason).await? {
            return Err(Error::Precondition(format!("saga {id}: {}", refused.0)).into());
        }
        let saga = log::find(&self.db, &id, false)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("saga {id} does not exist")))?;
        Ok(Response::new(self.message(saga, true).await?))
    }
}

/// A page size of 1 to 500; 0 means 50.
fn page_size(requested: i32) -> Result<i64, Error> {
    match requested {
        0 => Ok(50),
        n @ 1..=500 => Ok(i64::from(n)),
        _ => Err(Error::Invalid("page_size must be between 0 and 500".into())),
    }
}

fn saga_id(value: &str) -> Result<String, Error> {
    identifier("saga_id", value)
}

/// `ListSagas`' page token: a saga id it gave, or empty for the first page.
fn saga_page_token(value: &str) -> Result<&str, Error> {
    if value.is_empty() || uuid::Uuid::parse_str(value).is_ok() {
        Ok(value)
    } else {
        Err(Error::Invalid(
            "page_token is not one this service gave".into(),
        ))
    }
}

#[tonic::async_trait]
impl pb::saga_admin_server::SagaAdmin for SagaAdminApi {
    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        self.access.admin(&request)?;
        let request = request.into_inner();
        if !request.state.is_empty() && State::parse(&request.state).is_none() {
            let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
            return Err(Error::Invalid(format!("state must be one of {}", all.join(", "))).into());
        }
        let size = page_size(request.page_size)?;
        let page_token = saga_page_token(&request.page_token)?;
        let sagas = log::page(&self.db, &request.state, page_token, size + 1)
            .await
            .map_err(Error::from)?;
        let more = sagas.len() as i64 > size;
        let mut out = Vec::new();
        for saga in sagas.into_iter().take(usize::try_from(size).unwrap_or(0)) {
            out.push(self.message(saga, false).await?);
        }
        let next_page_token = match (more, out.last()) {
            (true, Some(last)) => last.saga_id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSagasResponse {
            sagas: out,
            next_page_token,
        }))
    }

    async fn get_saga(
        &self,
        request: Request<pb::GetSagaRequest>,
    ) -> Result<Response<pb::Saga>, Status> {
        self.access.admin(&request)?;
        let (key, by_order) = match request.into_inner().key {
            Some(pb::get_saga_request::Key::SagaId(id)) => (saga_id(&id)?, false),
            Some(pb::get_saga_request::Key::OrderNo(no)) => (identifier("order_no", &no)?, true),
            _ => return Err(Error::Invalid("give a saga_id or an order_no".into()).into()),
        };
        let saga = log::find(&self.db, &key, by_order)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("no saga for {key}")))?;
        Ok(Response::new(self.message(saga, true).await?))
    }

    async fn retry_saga(
        &self,
        request: Request<pb::SagaRef>,
    ) -> Result<Response<pb::Saga>, Status> {
        self.operate(request, OperatorAction::Retry).await
    }

    async fn compensate_saga(
        &self,
        request: Request<pb::SagaRef>,
    ) -> Result<Response<pb::Saga>, Status> {
        self.operate(request, OperatorAction::Compensate).await
    }

    async fn skip_step(&self, request: Request<pb::SagaRef>) -> Result<Response<pb::Saga>, Status> {
        self.operate(request, OperatorAction::Skip).await
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.access.admin(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let after: i64 = match request.page_token.as_str() {
            "" => 0,
            token => token
                .parse()
                .ok()
                .filter(|after: &i64| *after > 0)
                .ok_or_else(|| Error::Invalid("page_token is not one this service gave".into()))?,
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT id, message_id, topic, tag, message_key, consumer_group, reason, \
                 received_at, last_seen_at, times_seen, source, properties::TEXT AS properties, \
                 octet_length(payload) AS body_size, redriven_at IS NOT NULL AS redriven \
                 FROM dead_letter WHERE id > $1 ORDER BY id LIMIT $2",
                [after.into(), (size + 1).into()],
            ))
            .await
            .map_err(Error::from)?;
        let more = rows.len() as i64 > size;
        let mut out = Vec::new();
        let mut last: i64 = 0;
        for row in rows.into_iter().take(usize::try_from(size).unwrap_or(0)) {
            let read = |err: sea_orm::DbErr| Error::Corrupt(format!("dead letter: {err}"));
            last = row.try_get("", "id").map_err(read)?;
            let received: DateTime<Utc> = row.try_get("", "received_at").map_err(read)?;
            let last_seen: DateTime<Utc> = row.try_get("", "last_seen_at").map_err(read)?;
            out.push(pb::DeadLetter {
                message_id: row.try_get("", "message_id").map_err(read)?,
                topic: row.try_get("", "topic").map_err(read)?,
                tag: row.try_get("", "tag").map_err(read)?,
                consumer_group: row.try_get("", "consumer_group").map_err(read)?,
                reason: row.try_get("", "reason").map_err(read)?,
                received_at: Some(timestamp(received)),
                redriven: row.try_get("", "redriven").map_err(read)?,
                times_seen: row.try_get("", "times_seen").map_err(read)?,
                last_seen_at: Some(timestamp(last_seen)),
                source: row.try_get("", "source").map_err(read)?,
                key: row.try_get("", "message_key").map_err(read)?,
                properties: row.try_get("", "properties").map_err(read)?,
                body_size: row.try_get("", "body_size").map_err(read)?,
            });
        }
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: out,
            next_page_token: if more {
                last.to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn redrive_dead_letter(
        &self,
        request: Request<pb::RedriveDeadLetterRequest>,
    ) -> Result<Response<pb::DeadLetter>, Status> {
        self.access.admin(&request)?;
        let message_id = identifier("message_id", &request.into_inner().message_id)?;
        Ok(Response::new(self.redrive(&message_id).await?))
    }
}

impl SagaAdminApi {
    /// Publishes a dead letter again to its original topic with the same `message_id`, through
    /// the outbox: groups that handled it skip it, the group that failed handles it again.
    async fn redrive(&self, message_id: &str) -> Result<pb::DeadLetter, Error> {
        use sea_orm::TransactionTrait;
        let txn = self.db.begin().await?;
        let Some(row) = txn
            .query_one_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "SELECT message_id, topic, tag, message_key, consumer_group, reason, payload, \
                 received_at, last_seen_at, times_seen, source, properties::TEXT AS properties \
                 FROM dead_letter WHERE message_id = $1 ORDER BY last_seen_at DESC LIMIT 1 \
                 FOR UPDATE",
                [message_id.into()],
            ))
            .await?
        else {
            return Err(Error::NotFound(format!(
                "no dead letter with message_id {message_id}"
            )));
        };
        let Ok(id) = uuid::Uuid::parse_str(message_id) else {
            return Err(Error::Precondition(format!(
                "{message_id} was not published by this platform (its message_id is not a UUID); \
                 it cannot be redriven with the same id"
            )));
        };
        let topic: String = row.try_get("", "topic")?;
        let tag: String = row.try_get("", "tag")?;
        let message_key: String = row.try_get("", "message_key")?;
        let payload: Vec<u8> = row.try_get("", "payload")?;
        let body_size = payload.len();
        // It travels again as it first did: in its saga's step and attempt, in its trace.
        let properties: String = row.try_get("", "properties")?;
        let mut properties: std::collections::HashMap<String, String> =
            serde_json::from_str(&properties).unwrap_or_default();
        let message = ticket_platform::messaging::OutgoingMessage {
            topic: topic.clone(),
            tag: tag.clone(),
            key: message_key.clone(),
            message_id: id,
            saga_id: properties.remove("saga_id"),
            step: properties.remove("step"),
            attempt: properties
                .get("attempt")
                .and_then(|attempt| attempt.parse().ok())
                .unwrap_or(0),
            traceparent: properties.remove("traceparent"),
            payload,
        };
        message
            .validate()
            .map_err(|err| Error::Precondition(err.to_string()))?;
        ticket_platform::outbox::enqueue(&txn, &[message]).await?;
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "UPDATE dead_letter SET redriven_at = now() WHERE message_id = $1",
            [message_id.into()],
        ))
        .await?;
        txn.commit().await?;
        ticket_platform::outbox::committed();
        let received: DateTime<Utc> = row.try_get("", "received_at")?;
        let last_seen: DateTime<Utc> = row.try_get("", "last_seen_at")?;
        Ok(pb::DeadLetter {
            message_id: message_id.to_owned(),
            topic,
            tag,
            consumer_group: row.try_get("", "consumer_group")?,
            reason: row.try_get("", "reason")?,
            received_at: Some(timestamp(received)),
            redriven: true,
            times_seen: row.try_get("", "times_seen")?,
            last_seen_at: Some(timestamp(last_seen)),
            source: row.try_get("", "source")?,
            key: message_key,
            properties: row.try_get("", "properties")?,
            body_size: i32::try_from(body_size).unwrap_or(i32::MAX),
        })
    }
}
