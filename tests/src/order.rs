//! A running order-svc for the tests, next to a [`StockApp`] whose catalog and live stock it
//! uses. Several replicas can share one database (`start_replica`).

use std::net::SocketAddr;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::db::DatabaseConfig;
use ticket_proto::order::v1 as pb;
use ticket_proto::order::v1::contact_service_client::ContactServiceClient;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use tonic::transport::Channel;

use crate::fresh_database_config;
use crate::running::Running;
use crate::stock::StockApp;

pub struct OrderApp {
    pub addr: SocketAddr,
    /// Its admin HTTP port (`/metrics`, `/livez`, `/readyz`).
    pub admin: SocketAddr,
    pub channel: Channel,
    running: Running,
    pub db: DatabaseConnection,
    pub database: DatabaseConfig,
}

impl OrderApp {
    /// order-svc with a fresh database, in the stock app's RocketMQ namespace.
    pub async fn start(stock: &StockApp) -> Self {
        let database = fresh_database_config("t_order_").await;
        Self::start_replica(stock, database, false).await
    }

    /// order-svc on an existing database (a second replica, or a restart).
    /// `duplicates` sends every message it publishes twice (the publisher's test switch).
    pub async fn start_replica(
        stock: &StockApp,
        database: DatabaseConfig,
        duplicates: bool,
    ) -> Self {
        Self::start_with(stock, database, duplicates, None).await
    }

    /// order-svc on `database` that hands order events to the orchestrator at `orchestrator`
    /// when the broker does not take them, and sweeps orders left `PENDING` (see
    /// [`crate::order_config`]).
    pub async fn start_with(
        stock: &StockApp,
        database: DatabaseConfig,
        duplicates: bool,
        orchestrator: Option<&str>,
    ) -> Self {
        Self::start_configured(stock, database, duplicates, orchestrator, |_| {}).await
    }

    /// As [`Self::start_with`], with `change` applied to the settings first.
    pub async fn start_configured(
        stock: &StockApp,
        database: DatabaseConfig,
        duplicates: bool,
        orchestrator: Option<&str>,
        change: impl FnOnce(&mut order_svc::Config),
    ) -> Self {
        let service = crate::service_config("order-svc", database.clone(), stock.messaging.clone());
        let db = ticket_platform::db::connect(&database)
            .await
            .expect("connect to the test database");
        let mut config = crate::order_config(
            service,
            &format!("http://{}", stock.addr),
            &stock.key_prefix,
            orchestrator,
        );
        config.redis_url = stock.redis_url.clone();
        change(&mut config);
        let app = order_svc::Application::build(config)
            .await
            .expect("order-svc starts");
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
        }
    }

    pub fn orders(&self) -> OrderServiceClient<Channel> {
        OrderServiceClient::new(self.channel.clone())
    }

    pub fn contacts(&self) -> ContactServiceClient<Channel> {
        ContactServiceClient::new(self.channel.clone())
    }

    pub fn participant(&self) -> ParticipantClient<Channel> {
        ParticipantClient::new(self.channel.clone())
    }

    pub async fn create(
        &self,
        user_id: &str,
        tier_id: i64,
        quantity: i32,
        request_id: &str,
    ) -> Result<pb::Order, tonic::Status> {
        self.create_for(user_id, tier_id, quantity, request_id, None)
            .await
    }

    /// [`OrderApp::create`], with where the buyer's notifications go.
    pub async fn create_for(
        &self,
        user_id: &str,
        tier_id: i64,
        quantity: i32,
        request_id: &str,
        contact: Option<pb::Contact>,
    ) -> Result<pb::Order, tonic::Status> {
        self.orders()
            .create_order(pb::CreateOrderRequest {
                user_id: user_id.into(),
                tier_id,
                quantity,
                request_id: request_id.into(),
                wait_for_decision: false,
                contact,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The buyer cancels `order_no`.
    pub async fn cancel(&self, order_no: &str) -> pb::Order {
        self.orders()
            .cancel_order(pb::CancelOrderRequest {
                order_no: order_no.to_owned(),
                reason: "changed my mind".into(),
            })
            .await
            .expect("cancel")
            .into_inner()
    }

    pub async fn get(&self, order_no: &str) -> pb::Order {
        self.orders()
            .get_order(pb::GetOrderRequest {
                order_no: order_no.into(),
            })
            .await
            .expect("get order")
            .into_inner()
    }

    /// Every order's status, by order number.
    pub async fn statuses(&self) -> std::collections::HashMap<String, String> {
        self.db
            .query_all_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT order_no, status FROM orders",
            ))
            .await
            .expect("statuses")
            .into_iter()
            .map(|row| {
                (
                    row.try_get("", "order_no").expect("order_no"),
                    row.try_get("", "status").expect("status"),
                )
            })
            .collect()
    }

    /// Rows in the orders table.
    pub async fn count(&self) -> i64 {
        self.db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM orders",
            ))
            .await
            .expect("count")
            .expect("a row")
            .try_get("", "n")
            .expect("n")
    }

    /// Stops the service (health off, consumers stopped, outbox flushed).
    pub async fn stop(self) {
        self.running.stop().await;
    }
}
