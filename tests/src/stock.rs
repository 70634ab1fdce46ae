//! A running stock-svc for the tests: its own database, RocketMQ namespace and Redis key
//! prefix; gRPC clients with the admin token; a tier on sale in one call, or a session and
//! tiers of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use stock_svc::catalog::entity::tier;
use ticket_platform::db::DatabaseConfig;
use ticket_platform::messaging::MessagingConfig;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use ticket_proto::stock::v1::stock_service_client::StockServiceClient;
use tonic::Request;
use tonic::transport::Channel;

use crate::running::Running;
use crate::{fresh_database_config, messaging_config, redis_url, stock_config};

pub const TOKEN: &str = "stock-test-token";

pub struct StockApp {
    pub addr: SocketAddr,
    /// Its admin HTTP port (`/metrics`, `/livez`, `/readyz`).
    pub admin: SocketAddr,
    pub channel: Channel,
    running: Running,
    pub db: DatabaseConnection,
    pub database: DatabaseConfig,
    pub messaging: MessagingConfig,
    pub key_prefix: String,
    /// The Redis of its live stock.
    pub redis_url: String,
}

/// `request` with `authorization: Bearer <TOKEN>`.
pub fn admin<T>(message: T) -> Request<T> {
    crate::auth::bearer(TOKEN, message)
}

pub fn at(seconds_from_now: i64) -> Option<prost_types::Timestamp> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    Some(prost_types::Timestamp {
        seconds: i64::try_from(now).expect("seconds") + seconds_from_now,
        nanos: 0,
    })
}

impl StockApp {
    pub async fn start() -> Self {
        let database = fresh_database_config("t_stock_").await;
        Self::start_with(messaging_config(3), database, None, false).await
    }

    /// stock-svc on a given namespace and database; `key_prefix` reuses a Redis key prefix
    /// (a restart), `None` takes a fresh one.
    pub async fn start_with(
        messaging: MessagingConfig,
        database: DatabaseConfig,
        key_prefix: Option<String>,
        duplicates: bool,
    ) -> Self {
        Self::start_on_redis(messaging, database, key_prefix, duplicates, &redis_url()).await
    }

    /// A fresh stock-svc (its own database and namespace) on the Redis at `redis_url`.
    pub async fn start_on(redis_url: &str) -> Self {
        let database = fresh_database_config("t_stock_").await;
        Self::start_on_redis(messaging_config(3), database, None, false, redis_url).await
    }

    /// As [`StockApp::start_with`], on the Redis at `redis_url` (a private one, say).
    pub async fn start_on_redis(
        messaging: MessagingConfig,
        database: DatabaseConfig,
        key_prefix: Option<String>,
        duplicates: bool,
        redis_url: &str,
    ) -> Self {
        let service = crate::service_config("stock-svc", database.clone(), messaging.clone());
        let db = ticket_platform::db::connect(&service.database)
            .await
            .expect("connect to the test database");
        let mut config = stock_config(service);
        config.redis_url = redis_url.to_owned();
        if let Some(prefix) = key_prefix {
            config.redis_key_prefix = prefix;
        }
        let key_prefix = config.redis_key_prefix.clone();
        let app = stock_svc::Application::build(config)
            .await
            .expect("stock-svc starts");
        app.set_duplicate_deliveries(duplicates);
        let admin = app.admin_addr();
        let running =
            Running::spawn(app.local_addr(), |stopped| app.run_until_stopped(stopped)).await;
        Self {
            addr: running.addr,
            admin,
            channel: running.channel.clone(),
            running,
            db,
            database,
            messaging,
            key_prefix,
            redis_url: redis_url.to_owned(),
        }
    }

    pub fn catalog(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::new(self.channel.clone())
    }

    pub fn stock(&self) -> StockServiceClient<Channel> {
        StockServiceClient::new(self.channel.clone())
    }

    pub fn participant(&self) -> ParticipantClient<Channel> {
        ParticipantClient::new(self.channel.clone())
    }

    /// A gate on the same Redis keys as the service (to make Redis lose a tier, say).
    pub async fn gate(&self) -> stock_svc::gate::StockGate {
        stock_svc::gate::StockGate::connect(&self.redis_url, 2, &self.key_prefix)
            .await
            .expect("redis")
    }

    /// A show and a session of it whose sale runs from `opens_in` to `closes_in` seconds from
    /// now, where a buyer may hold `per_user_limit` tickets across its tiers.
    pub async fn session_with_window(
        &self,
        per_user_limit: i32,
        opens_in: i64,
        closes_in: i64,
    ) -> pb::Session {
        let mut catalog = self.catalog();
        let show = catalog
            .create_show(admin(pb::CreateShowRequest {
                title: "Flash Sale Night".into(),
                venue: "Arena".into(),
            }))
            .await
            .expect("create show")
            .into_inner();
        catalog
            .create_session(admin(pb::CreateSessionRequest {
                show_id: show.show_id,
                starts_at: at(closes_in.max(opens_in) + 3_600),
                sale_opens_at: at(opens_in),
                sale_closes_at: at(closes_in),
                per_user_limit,
            }))
            .await
            .expect("create session")
            .into_inner()
    }

    /// A session on sale now, `per_user_limit` tickets per buyer across its tiers.
    pub async fn session(&self, per_user_limit: i32) -> pb::Session {
        self.session_with_window(per_user_limit, -60, 3_600).await
    }

    /// A tier `name` of `total` tickets in `session_id`; `per_user_limit` is the tier's own cap
    /// per buyer (0: the session's limit alone).
    pub async fn tier_in(
        &self,
        session_id: i64,
        name: &str,
        total: i64,
        per_user_limit: i32,
    ) -> pb::Tier {
        self.catalog()
            .create_tier(admin(pb::CreateTierRequest {
                session_id,
                name: name.into(),
                price_cents: 12_500,
                total,
                per_user_limit,
            }))
            .await
            .expect("create tier")
            .into_inner()
    }

    /// A tier of `total` tickets, `per_user_limit` each, whose sale runs from
    /// `opens_in` to `closes_in` seconds from now: the only tier of a session of its own whose
    /// limit per buyer is `per_user_limit`.
    pub async fn tier_with_window(
        &self,
        total: i64,
        per_user_limit: i32,
        opens_in: i64,
        closes_in: i64,
    ) -> pb::Tier {
        let session = self
            .session_with_window(per_user_limit, opens_in, closes_in)
            .await;
        self.tier_in(session.session_id, "Floor", total, 0).await
    }

    /// A tier on sale now.
    pub async fn tier(&self, total: i64, per_user_limit: i32) -> pb::Tier {
        self.tier_with_window(total, per_user_limit, -60, 3_600)
            .await
    }

    /// Tickets the ledger records as held (deducted or confirmed) in `tier_id`.
    pub async fn ledger_held(&self, tier_id: i64) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        self.db
            .query_one_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "SELECT COALESCE(SUM(quantity), 0)::BIGINT AS n FROM stock_ledger \
                 WHERE tier_id = $1 AND state IN ('D', 'C')",
                [tier_id.into()],
            ))
            .await
            .expect("ledger")
            .expect("a row")
            .try_get("", "n")
            .expect("n")
    }

    /// The tier's `sold` as the catalog (Postgres) has it.
    pub async fn sold(&self, tier_id: i64) -> i64 {
        self.catalog()
            .get_tier(pb::GetTierRequest { tier_id })
            .await
            .expect("tier")
            .into_inner()
            .sold
    }

    pub async fn stock_of(&self, tier_id: i64) -> pb::Stock {
        self.stock()
            .get_stock(pb::GetStockRequest { tier_id })
            .await
            .expect("get stock")
            .into_inner()
    }

    pub async fn reconcile(&self, tier_id: i64) -> pb::ReconcileResponse {
        self.stock()
            .reconcile(admin(pb::ReconcileRequest {
                tier_id,
                repair: false,
            }))
            .await
            .expect("reconcile")
            .into_inner()
    }

    /// Every tier of the sessions `tiers` belong to, by session.
    pub async fn sessions_of(&self, tiers: &[i64]) -> BTreeMap<i64, Vec<i64>> {
        let sessions: Vec<i64> = tier::Entity::find()
            .filter(tier::Column::Id.is_in(tiers.to_vec()))
            .all(&self.db)
            .await
            .expect("tiers")
            .into_iter()
            .map(|t| t.session_id)
            .collect();
        let mut by_session: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for t in tier::Entity::find()
            .filter(tier::Column::SessionId.is_in(sessions))
            .all(&self.db)
            .await
            .expect("tiers of the sessions")
        {
            by_session.entry(t.session_id).or_default().push(t.id);
        }
        by_session
    }

    /// Stops the service and forgets in Redis the sessions of `tiers` (every key of theirs).
    pub async fn stop(self, tiers: &[i64]) {
        let gate = self.gate().await;
        for (session_id, tier_ids) in self.sessions_of(tiers).await {
            gate.forget_session(session_id, &tier_ids)
                .await
                .expect("clean up");
        }
        self.halt().await;
    }

    /// Stops the service and keeps its Redis keys (to start it again).
    pub async fn halt(self) {
        self.running.stop().await;
    }
}
