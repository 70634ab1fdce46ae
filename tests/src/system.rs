//! The whole system for a test: stock-svc, order-svc, notify-svc and the orchestrator, each
//! with its own database, all in one RocketMQ namespace of the test's own.

use std::time::Duration;

use ticket_proto::notify::v1 as notify_pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::saga::v1 as saga_pb;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;
use tonic::transport::Channel;

use crate::order::OrderApp;
pub use crate::running::Running;
use crate::stock::{StockApp, admin};
use crate::{eventually, fresh_database_config};
use orchestrator::dispatch::{ParticipantAddrs, Transport};
use orchestrator::saga::purchase::SagaSettings;

pub struct System {
    stock: Option<StockApp>,
    pub order: OrderApp,
    pub notify: Running,
    pub orchestrator: Running,
    pub orchestrator_database: ticket_platform::db::DatabaseConfig,
    /// Where the orchestrator listens, across restarts (order-svc hands it events there).
    pub orchestrator_addr: std::net::SocketAddr,
    pub saga: SagaSettings,
    pub transport: Transport,
    pub duplicates: bool,
    stopped_stock: Option<(
        ticket_platform::messaging::MessagingConfig,
        ticket_platform::db::DatabaseConfig,
        String,
    )>,
}

impl System {
    pub async fn start(saga: SagaSettings, transport: Transport) -> Self {
        Self::start_with(saga, transport, false).await
    }

    /// `duplicates`: every service sends every message twice (the publisher's test switch).
    pub async fn start_with(saga: SagaSettings, transport: Transport, duplicates: bool) -> Self {
        Self::start_on(crate::messaging_config(3), saga, transport, duplicates).await
    }

    /// The system on a given broker and namespace.
    pub async fn start_on(
        messaging: ticket_platform::messaging::MessagingConfig,
        saga: SagaSettings,
        transport: Transport,
        duplicates: bool,
    ) -> Self {
        Self::start_notifying(messaging, saga, transport, duplicates, |_| {}).await
    }

    /// [`System::start_on`], notify-svc's configuration changed by `notify` (its channels,
    /// say; every channel logs unless changed).
    pub async fn start_notifying(
        messaging: ticket_platform::messaging::MessagingConfig,
        saga: SagaSettings,
        transport: Transport,
        duplicates: bool,
        notify: impl FnOnce(&mut notify_svc::Config),
    ) -> Self {
        let stock = StockApp::start_with(
            messaging,
            fresh_database_config("t_stock_").await,
            None,
            duplicates,
        )
        .await;
        let orchestrator_addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
        let order = OrderApp::start_with(
            &stock,
            fresh_database_config("t_order_").await,
            duplicates,
            Some(&format!("http://{orchestrator_addr}")),
        )
        .await;
        let mut notify_config = notify_svc::Config::with_service(crate::service_config(
            "notify-svc",
            fresh_database_config("t_notify_").await,
            stock.messaging.clone(),
        ));
        // The orders and the buyers' contacts come from order-svc, the shows from stock-svc,
        // as in a deployment.
        notify_config.orders_addr = format!("http://{}", order.addr);
        notify_config.catalog_addr = format!("http://{}", stock.addr);
        notify_config.buyers = crate::auth::buyer_tokens();
        notify(&mut notify_config);
        let notify_app = notify_svc::Application::build(notify_config)
            .await
            .expect("notify-svc starts");
        notify_app.set_duplicate_deliveries(duplicates);
        let notify_admin = notify_app.admin_addr();
        let notify = Running::spawn(notify_app.local_addr(), |stopped| {
            notify_app.run_until_stopped(stopped)
        })
        .await
        .admin_at(notify_admin);
        let orchestrator_database = fresh_database_config("t_orch_").await;
        let orchestrator = start_orchestrator(
            &stock,
            &order,
            &notify,
            (orchestrator_database.clone(), orchestrator_addr),
            saga,
            transport,
            duplicates,
        )
        .await;
        Self {
            stock: Some(stock),
            order,
            notify,
            orchestrator,
            orchestrator_database,
            orchestrator_addr,
            saga,
            transport,
            duplicates,
            stopped_stock: None,
        }
    }

    /// Starts the orchestrator on the system's orchestrator database and address (again,
    /// after a stop).
    pub async fn start_orchestrator(&self) -> Running {
        self.orchestrator_on(self.orchestrator_addr).await
    }

    /// Another orchestrator replica on the system's saga log, on a port of its own.
    pub async fn start_orchestrator_replica(&self) -> Running {
        self.orchestrator_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
    }

    async fn orchestrator_on(&self, addr: std::net::SocketAddr) -> Running {
        start_orchestrator(
            self.stock(),
            &self.order,
            &self.notify,
            (self.orchestrator_database.clone(), addr),
            self.saga,
            self.transport,
            self.duplicates,
        )
        .await
    }
    /// stock-svc (while it runs).
    pub fn stock(&self) -> &StockApp {
        self.stock.as_ref().expect("stock-svc is running")
    }

    /// Stops stock-svc, keeping its database and Redis keys.
    pub async fn stop_stock(&mut self) {
        if let Some(stock) = self.stock.take() {
            self.stopped_stock = Some((
                stock.messaging.clone(),
                stock.database.clone(),
                stock.key_prefix.clone(),
            ));
            stock.halt().await;
        }
    }

    /// Starts stock-svc again where [`System::stop_stock`] left it.
    pub async fn start_stock(&mut self) {
        if let Some((messaging, database, key_prefix)) = self.stopped_stock.take() {
            self.stock = Some(
                StockApp::start_with(messaging, database, Some(key_prefix), self.duplicates).await,
            );
        }
    }

    pub fn admin(&self) -> SagaAdminClient<Channel> {
        SagaAdminClient::new(self.orchestrator.channel.clone())
    }

    pub async fn saga_of(&self, order_no: &str) -> Option<saga_pb::Saga> {
        self.admin()
            .get_saga(admin(saga_pb::GetSagaRequest {
                key: Some(saga_pb::get_saga_request::Key::OrderNo(order_no.into())),
            }))
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }

    /// Every saga, page by page.
    pub async fn all_sagas(&self) -> Vec<saga_pb::Saga> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .admin()
                .list_sagas(admin(saga_pb::ListSagasRequest {
                    state: String::new(),
                    page_size: 500,
                    page_token: token,
                }))
                .await
                .expect("list sagas")
                .into_inner();
            all.extend(page.sagas);
            if page.next_page_token.is_empty() {
                return all;
            }
            token = page.next_page_token;
        }
    }

    /// A new order whose saga has reserved it and awaits payment.
    pub async fn reserved_order(
        &self,
        user_id: &str,
        tier_id: i64,
        quantity: i32,
        request_id: &str,
    ) -> order_pb::Order {
        let order = self
            .order
            .create(user_id, tier_id, quantity, request_id)
            .await
            .expect("create an order");
        self.saga_reaches(&order.order_no, "WAITING").await;
        self.order.get(&order.order_no).await
    }

    /// Waits until the order reaches `status`.
    pub async fn order_reaches(
        &self,
        order_no: &str,
        status: order_pb::OrderStatus,
    ) -> order_pb::Order {
        eventually(
            Duration::from_secs(60),
            &format!("order {order_no} {status:?}"),
            || async {
                let order = self.order.get(order_no).await;
                (order.status() == status).then_some(order)
            },
        )
        .await
    }

    /// Waits until the order's saga reaches `state`.
    pub async fn saga_reaches(&self, order_no: &str, state: &str) -> saga_pb::Saga {
        eventually(
            Duration::from_secs(60),
            &format!("saga of {order_no} {state}"),
            || async { self.saga_of(order_no).await.filter(|s| s.state == state) },
        )
        .await
    }

    pub async fn notifications(&self, order_no: &str) -> Vec<notify_pb::Notification> {
        NotificationServiceClient::new(self.notify.channel.clone())
            .list_notifications(notify_pb::ListNotificationsRequest {
                order_no: order_no.into(),
            })
            .await
            .expect("list notifications")
            .into_inner()
            .notifications
    }

    /// Waits until `order_no`'s `template` notifications are sent, one on each of the three
    /// channels, and returns them.
    pub async fn told(&self, order_no: &str, template: &str) -> Vec<notify_pb::Notification> {
        eventually(
            Duration::from_secs(60),
            &format!("{order_no} told {template} on three channels"),
            || async {
                let told: Vec<_> = self
                    .notifications(order_no)
                    .await
                    .into_iter()
                    .filter(|n| n.template == template)
                    .collect();
                (told.len() == 3 && told.iter().all(|n| n.status == "SENT")).then_some(told)
            },
        )
        .await
    }

    /// Waits until each order's three notifications (SMS, e-mail, push) are in the delivery
    /// log, then checks that no more arrive for a moment.
    pub async fn notified_once(&self, order_numbers: &[&str]) {
        for order_no in order_numbers {
            eventually(Duration::from_secs(60), "three notifications", || async {
                (self.notifications(order_no).await.len() >= 3).then_some(())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for order_no in order_numbers {
            let all = self.notifications(order_no).await;
            assert_eq!(all.len(), 3, "one notification per channel: {all:?}");
        }
    }

    pub async fn stop(self, tiers: &[i64]) {
        self.orchestrator.stop().await;
        self.notify.stop().await;
        self.order.stop().await;
        if let Some(stock) = self.stock {
            stock.stop(tiers).await;
        }
    }
}

async fn start_orchestrator(
    stock: &StockApp,
    order: &OrderApp,
    notify: &Running,
    (database, addr): (ticket_platform::db::DatabaseConfig, std::net::SocketAddr),
    saga: SagaSettings,
    transport: Transport,
    duplicates: bool,
) -> Running {
    let participants = ParticipantAddrs {
        stock: format!("http://{}", stock.addr),
        order: format!("http://{}", order.addr),
        notify: format!("http://{}", notify.addr),
    };
    let mut service = crate::service_config("orchestrator", database, stock.messaging.clone());
    service.grpc_addr = addr;
    let config = crate::orchestrator_config(service, participants, saga, transport);
    let app = orchestrator::Application::build(config)
        .await
        .expect("orchestrator starts");
    app.set_duplicate_deliveries(duplicates);
    let admin = app.admin_addr();
    Running::spawn(app.local_addr(), |stopped| app.run_until_stopped(stopped))
        .await
        .admin_at(admin)
}
