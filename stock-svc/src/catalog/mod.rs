//! `CatalogService`: shows, their sessions and ticket tiers. Writes need the admin token; every
//! field is validated before anything is written. A session carries the per-buyer limit that
//! counts all its tiers; a tier may cap its own share lower. A new tier's stock is put into
//! Redis in the same step (with its session's, see [`crate::rebuild`]), and the tier is not
//! created when that fails.

pub mod entity;
pub(crate) mod validate;

pub use self::validate::DEFAULT_SESSION_PER_USER_LIMIT;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use ticket_platform::time::timestamp;
use ticket_proto::stock::v1 as pb;
use tonic::{Request, Response, Status};

use self::entity::{session, show, tier};

use crate::error::Error;
use crate::gate::{StockGate, TierRef};
use crate::ledger;
use crate::rebuild::load_session;
use crate::tiers::buyer_limit;

pub struct Catalog {
    pub db: DatabaseConnection,
    pub gate: StockGate,
    pub access: ticket_platform::auth::Access,
}

impl Catalog {
    async fn tier_message(&self, tier: &tier::Model) -> Result<pb::Tier, Error> {
        let tier_ref = TierRef {
            session_id: tier.session_id,
            tier_id: tier.id,
        };
        // Sold tickets are the tier's confirmed ledger rows; a tier Redis does not hold (not
        // loaded yet) has what the ledger does not hold.
        let ledger = ledger::totals(&self.db, tier.id).await?;
        let available = match self.gate.counters(tier_ref).await? {
            Some(counters) => counters.available,
            None => tier.total - ledger.deducted - ledger.confirmed,
        };
        let Some(session) = session::Entity::find_by_id(tier.session_id)
            .one(&self.db)
            .await?
        else {
            return Err(Error::NotFound(format!(
                "session {} of tier {} does not exist",
                tier.session_id, tier.id
            )));
        };
        let per_user_limit = buyer_limit(
            i64::from(session.per_user_limit),
            i64::from(tier.per_user_limit),
        );
        Ok(pb::Tier {
            tier_id: tier.id,
            session_id: tier.session_id,
            name: tier.name.clone(),
            price_cents: tier.price_cents,
            total: tier.total,
            available,
            sold: ledger.confirmed,
            per_user_limit: i32::try_from(per_user_limit).unwrap_or(session.per_user_limit),
            show_id: session.show_id,
            tier_limit: tier.per_user_limit,
        })
    }

    async fn show_message(&self, show: show::Model) -> Result<pb::Show, Error> {
        let sessions = session::Entity::find()
            .filter(session::Column::ShowId.eq(show.id))
            .order_by_asc(session::Column::Id)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(sessions.len());
        for s in sessions {
            let tiers = tier::Entity::find()
                .filter(tier::Column::SessionId.eq(s.id))
                .order_by_asc(tier::Column::Id)
                .all(&self.db)
                .await?;
            let mut tier_messages = Vec::with_capacity(tiers.len());
            for t in &tiers {
                tier_messages.push(self.tier_message(t).await?);
            }
            out.push(session_message(&s, tier_messages));
        }
        Ok(pb::Show {
            show_id: show.id,
            title: show.title,
            venue: show.venue,
            sessions: out,
        })
    }
}

fn session_message(s: &session::Model, tiers: Vec<pb::Tier>) -> pb::Session {
    pb::Session {
        session_id: s.id,
        show_id: s.show_id,
        starts_at: Some(timestamp(s.starts_at)),
        sale_opens_at: Some(timestamp(s.sale_opens_at)),
        sale_closes_at: Some(timestamp(s.sale_closes_at)),
        tiers,
        per_user_limit: s.per_user_limit,
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for Catalog {
    #[tracing::instrument(skip_all)]
    async fn create_show(
        &self,
        request: Request<pb::CreateShowRequest>,
    ) -> Result<Response<pb::Show>, Status> {
        self.access.admin(&request)?;
        let new = validate::NewShow::try_from(request.into_inner())?;
        let show = show::ActiveModel {
            title: Set(new.title),
            venue: Set(new.venue),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(Error::from)?;
        Ok(Response::new(pb::Show {
            show_id: show.id,
            title: show.title,
            venue: show.venue,
            sessions: Vec::new(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        self.access.admin(&request)?;
        let new = validate::NewSession::try_from(request.into_inner())?;
        if show::Entity::find_by_id(new.show_id)
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .is_none()
        {
            return Err(Error::NotFound(format!("show {} does not exist", new.show_id)).into());
        }
        let session = session::ActiveModel {
            show_id: Set(new.show_id),
            starts_at: Set(new.starts_at),
            sale_opens_at: Set(new.sale_opens_at),
            sale_closes_at: Set(new.sale_closes_at),
            per_user_limit: Set(new.per_user_limit),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(Error::from)?;
        Ok(Response::new(session_message(&session, Vec::new())))
    }

    #[tracing::instrument(skip_all)]
    async fn create_tier(
        &self,
        request: Request<pb::CreateTierRequest>,
    ) -> Result<Response<pb::Tier>, Status> {
        self.access.admin(&request)?;
        let new = validate::NewTier::try_from(request.into_inner())?;
        let txn = self.db.begin().await.map_err(Error::from)?;
        let Some(session) = session::Entity::find_by_id(new.session_id)
            .one(&txn)
            .await
            .map_err(Error::from)?
        else {
            return Err(
                Error::NotFound(format!("session {} does not exist", new.session_id)).into(),
            );
        };
        if new.per_user_limit > session.per_user_limit {
            return Err(Error::Invalid(format!(
                "per_user_limit {} of the tier is above the limit of {} tickets per buyer of \
                 session {}; a tier's cap can only be lower (0 = the session's limit applies)",
                new.per_user_limit, session.per_user_limit, session.id
            ))
            .into());
        }
        let name = new.name.clone();
        let tier = tier::ActiveModel {
            session_id: Set(new.session_id),
            name: Set(new.name),
            price_cents: Set(new.price_cents),
            total: Set(new.total),
            per_user_limit: Set(new.per_user_limit),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|err| match err.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::AlreadyExists(format!(
                "session {} already has a tier named {name:?}; give this one another name",
                session.id
            )),
            _ => Error::from(err),
        })?;
        let loaded = load_session(&txn, &self.gate, session.id).await?;
        if !loaded.contains(&tier.id) {
            // A new tier cannot have live stock yet: these keys belong to another database.
            return Err(Error::Refused(format!(
                "Redis already holds stock for tier {} under this key prefix: another deployment \
                 shares the Redis and its `redis.key_prefix`; give each its own prefix",
                tier.id
            ))
            .into());
        }
        txn.commit().await.map_err(Error::from)?;
        Ok(Response::new(self.tier_message(&tier).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_show(
        &self,
        request: Request<pb::GetShowRequest>,
    ) -> Result<Response<pb::Show>, Status> {
        let show_id = validate::id("show_id", request.into_inner().show_id)?;
        let show = show::Entity::find_by_id(show_id)
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("show {show_id} does not exist")))?;
        Ok(Response::new(self.show_message(show).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_shows(
        &self,
        request: Request<pb::ListShowsRequest>,
    ) -> Result<Response<pb::ListShowsResponse>, Status> {
        let page = validate::Page::try_from(request.into_inner())?;
        let shows = show::Entity::find()
            .filter(show::Column::Id.gt(page.after))
            .order_by_asc(show::Column::Id)
            .limit(page.size + 1)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        let more = shows.len() as u64 > page.size;
        let mut out = Vec::new();
        for show in shows
            .into_iter()
            .take(usize::try_from(page.size).unwrap_or(usize::MAX))
        {
            out.push(self.show_message(show).await?);
        }
        let next_page_token = if more {
            out.last()
                .map(|s| s.show_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListShowsResponse {
            shows: out,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_tier(
        &self,
        request: Request<pb::GetTierRequest>,
    ) -> Result<Response<pb::Tier>, Status> {
        let tier_id = validate::id("tier_id", request.into_inner().tier_id)?;
        let tier = tier::Entity::find_by_id(tier_id)
            .one(&self.db)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("tier {tier_id} does not exist")))?;
        Ok(Response::new(self.tier_message(&tier).await?))
    }
}
