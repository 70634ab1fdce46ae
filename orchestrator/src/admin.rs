//! `SagaAdmin`: operators list sagas by state, inspect one with its step history, retry a
//! parked saga, compensate an unpaid one, and list the orchestrator's dead letters. Every call
//! needs the admin token.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use ticket_platform::grpc::require_admin;
use ticket_platform::time::timestamp;
use ticket_proto::saga::v1 as pb;
use tonic::{Request, Response, Status};

use crate::saga::engine::Engine;
use crate::saga::log::{self, Saga, saga, state};

pub struct SagaAdminApi {
    pub db: DatabaseConnection,
    pub engine: Engine,
    pub admin_token: String,
}

fn unavailable(err: sea_orm::DbErr) -> Status {
    tracing::error!(error = %err, "database failure");
    Status::unavailable("the saga log is unavailable; retry later")
}

impl SagaAdminApi {
    async fn message(&self, saga: Saga, with_history: bool) -> Result<pb::Saga, Status> {
        let history = if with_history {
            log::history(&self.db, &saga.saga_id)
                .await
                .map_err(unavailable)?
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
                .collect()
        } else {
            Vec::new()
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
        })
    }
}

/// A page size of 1 to 500; 0 means 50.
fn page_size(requested: i32) -> Result<i64, Status> {
    match requested {
        0 => Ok(50),
        n @ 1..=500 => Ok(i64::from(n)),
        _ => Err(Status::invalid_argument(
            "page_size must be between 0 and 500",
        )),
    }
}

fn saga_id(value: &str) -> Result<String, Status> {
    if value.is_empty() || value.len() > 64 {
        return Err(Status::invalid_argument(
            "saga_id must be between 1 and 64 characters",
        ));
    }
    Ok(value.to_owned())
}

#[tonic::async_trait]
impl pb::saga_admin_server::SagaAdmin for SagaAdminApi {
    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        require_admin(&request, &self.admin_token)?;
        let request = request.into_inner();
        if !request.state.is_empty() && !state::ALL.contains(&request.state.as_str()) {
            return Err(Status::invalid_argument(format!(
                "state must be one of {}",
                state::ALL.join(", ")
            )));
        }
        let size = page_size(request.page_size)?;
        let after = match request.page_token.as_str() {
            "" => String::new(),
            token => token.to_owned(),
        };
        let sagas = saga::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT * FROM saga WHERE ($1 = '' OR state = $1) AND saga_id > $2 \
                 ORDER BY saga_id LIMIT $3",
                [request.state.into(), after.into(), (size + 1).into()],
            ))
            .all(&self.db)
            .await
            .map_err(unavailable)?;
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
        require_admin(&request, &self.admin_token)?;
        let (key, by_order) = match request.into_inner().key {
            Some(pb::get_saga_request::Key::SagaId(id)) => (saga_id(&id)?, false),
            Some(pb::get_saga_request::Key::OrderNo(no)) if !no.is_empty() && no.len() <= 64 => {
                (no, true)
            }
            _ => return Err(Status::invalid_argument("give a saga_id or an order_no")),
        };
        let saga = log::find(&self.db, &key, by_order)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("no saga for {key}")))?;
        Ok(Response::new(self.message(saga, true).await?))
    }

    async fn retry_saga(
        &self,
        request: Request<pb::SagaRef>,
    ) -> Result<Response<pb::Saga>, Status> {
        require_admin(&request, &self.admin_token)?;
        let id = saga_id(&request.into_inner().saga_id)?;
        let before = log::find(&self.db, &id, false)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("saga {id} does not exist")))?;
        if before.state != state::PARKED {
            return Err(Status::failed_precondition(format!(
                "saga {id} is {}; only a parked saga is retried",
                before.state
            )));
        }
        let saga = self
            .engine
            .retry(&id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found(format!("saga {id} does not exist")))?;
        Ok(Response::new(self.message(saga, true).await?))
    }

    async fn compensate_saga(
        &self,
        request: Request<pb::SagaRef>,
    ) -> Result<Response<pb::Saga>, Status> {
        require_admin(&request, &self.admin_token)?;
        let id = saga_id(&request.into_inner().saga_id)?;
        match self.engine.compensate_now(&id).await.map_err(unavailable)? {
            Ok(saga) => Ok(Response::new(self.message(saga, true).await?)),
            Err(why) if why.contains("does not exist") => Err(Status::not_found(why)),
            Err(why) => Err(Status::failed_precondition(why)),
        }
    }

    async fn skip_step(&self, request: Request<pb::SagaRef>) -> Result<Response<pb::Saga>, Status> {
        require_admin(&request, &self.admin_token)?;
        Err(Status::unimplemented(
            "skipping a step is not available; retry the saga or compensate it",
        ))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        require_admin(&request, &self.admin_token)?;
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let after: i64 = match request.page_token.as_str() {
            "" => 0,
            token => token
                .parse()
                .map_err(|_| Status::invalid_argument("page_token is not one this service gave"))?,
        };
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT id, message_id, topic, tag, consumer_group, reason, received_at, \
                 redriven_at IS NOT NULL AS redriven FROM dead_letter WHERE id > $1 \
                 ORDER BY id LIMIT $2",
                [after.into(), (size + 1).into()],
            ))
            .await
            .map_err(unavailable)?;
        let more = rows.len() as i64 > size;
        let mut out = Vec::new();
        let mut last: i64 = 0;
        for row in rows.into_iter().take(usize::try_from(size).unwrap_or(0)) {
            let read = |err: sea_orm::DbErr| Status::internal(err.to_string());
            last = row.try_get("", "id").map_err(read)?;
            let received: DateTime<Utc> = row.try_get("", "received_at").map_err(read)?;
            out.push(pb::DeadLetter {
                message_id: row.try_get("", "message_id").map_err(read)?,
                topic: row.try_get("", "topic").map_err(read)?,
                tag: row.try_get("", "tag").map_err(read)?,
                consumer_group: row.try_get("", "consumer_group").map_err(read)?,
                reason: row.try_get("", "reason").map_err(read)?,
                received_at: Some(timestamp(received)),
                redriven: row.try_get("", "redriven").map_err(read)?,
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
        require_admin(&request, &self.admin_token)?;
        let message_id = request.into_inner().message_id;
        if message_id.is_empty() || message_id.len() > 64 {
            return Err(Status::invalid_argument(
                "message_id must be between 1 and 64 characters",
            ));
        }
        let redriven = self.redrive(&message_id).await.map_err(unavailable)?;
        redriven.map(Response::new)
    }
}

impl SagaAdminApi {
    /// Publishes a dead letter again to its original topic with the same `message_id`, through
    /// the outbox: groups that handled it skip it, the group that failed handles it again.
    async fn redrive(
        &self,
        message_id: &str,
    ) -> Result<Result<pb::DeadLetter, Status>, sea_orm::DbErr> {
        use sea_orm::TransactionTrait;
        let txn = self.db.begin().await?;
        let Some(row) = txn
            .query_one_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                "SELECT message_id, topic, tag, message_key, consumer_group, reason, payload, \
                 received_at FROM dead_letter WHERE message_id = $1 ORDER BY id LIMIT 1 FOR UPDATE",
                [message_id.into()],
            ))
            .await?
        else {
            return Ok(Err(Status::not_found(format!(
                "no dead letter with message_id {message_id}"
            ))));
        };
        let Ok(id) = uuid::Uuid::parse_str(message_id) else {
            return Ok(Err(Status::failed_precondition(format!(
                "{message_id} was not published by this platform (its message_id is not a UUID); \
                 it cannot be redriven with the same id"
            ))));
        };
        let topic: String = row.try_get("", "topic")?;
        let tag: String = row.try_get("", "tag")?;
        let key: String = row.try_get("", "message_key")?;
        let payload: Vec<u8> = row.try_get("", "payload")?;
        let message = ticket_platform::messaging::OutgoingMessage {
            topic: topic.clone(),
            tag: tag.clone(),
            key,
            message_id: id,
            saga_id: None,
            step: None,
            attempt: 0,
            traceparent: None,
            payload,
        };
        if let Err(err) = message.validate() {
            return Ok(Err(Status::failed_precondition(err.to_string())));
        }
        ticket_platform::outbox::enqueue(&txn, &[message]).await?;
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            "UPDATE dead_letter SET redriven_at = now() WHERE message_id = $1",
            [message_id.into()],
        ))
        .await?;
        txn.commit().await?;
        let received: DateTime<Utc> = row.try_get("", "received_at")?;
        Ok(Ok(pb::DeadLetter {
            message_id: message_id.to_owned(),
            topic,
            tag,
            consumer_group: row.try_get("", "consumer_group")?,
            reason: row.try_get("", "reason")?,
            received_at: Some(timestamp(received)),
            redriven: true,
        }))
    }
}
