//! Every dependency can go away and come back, with the four services running as the binaries
//! a user runs: while Postgres is down every call that needs it answers UNAVAILABLE within
//! seconds and health is NOT_SERVING; while the broker (and its name server) is down the
//! services keep serving over gRPC; when either returns the services recover by themselves
//! within 10 s; a SIGTERM during either outage ends the process within the drain's grace.
//! (Redis: `redis_faults.rs`.) Each test kills only a Postgres or broker of its own.

#![recursion_limit = "512"]

use std::time::{Duration, Instant};

use e2e::broker::PrivateBroker;
use e2e::postgres::PrivatePostgres;
use e2e::processes::{Dependencies, ProcessSystem, Service};
use e2e::stock::admin;
use ticket_proto::notify::v1 as notify_pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::order::v1::OrderStatus;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::saga::v1 as saga_pb;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;
use ticket_proto::stock::v1 as stock_pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A SIGTERM must end a service within this: the drain's grace (15 s for messaging, 5 s of
/// it for the outbox) and a margin. Kubernetes' `terminationGracePeriodSeconds` is longer.
const STOP_WITHIN: Duration = Duration::from_secs(20);

fn orders(system: &ProcessSystem) -> OrderServiceClient<tonic::transport::Channel> {
    OrderServiceClient::new(system.channel(Service::Order))
}

async fn create(
    system: &ProcessSystem,
    user: &str,
    tier_id: i64,
) -> Result<order_pb::Order, tonic::Status> {
    orders(system)
        .create_order(order_pb::CreateOrderRequest {
            user_id: user.into(),
            tier_id,
            quantity: 1,
            request_id: "r".into(),
            wait_for_decision: false,
            contact: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get(system: &ProcessSystem, order_no: &str) -> Option<order_pb::Order> {
    let order = orders(system)
        .get_order(order_pb::GetOrderRequest {
            order_no: order_no.into(),
        })
        .await
        .ok()?;
    Some(order.into_inner())
}

async fn status_of(system: &ProcessSystem, order_no: &str) -> Option<OrderStatus> {
    get(system, order_no).await.map(|order| order.status())
}

/// Creates an order, waits for its reservation, pays it and waits until it is confirmed;
/// how long that took.
async fn purchase(system: &ProcessSystem, user: &str, tier_id: i64) -> Duration {
    let started = Instant::now();
    let order = create(system, user, tier_id).await.expect("an order");
    let reserved = e2e::eventually(Duration::from_secs(15), "a reserved order", || async {
        get(system, &order.order_no)
            .await
            .filter(|now| now.status() == OrderStatus::AwaitingPayment)
    })
    .await;
    orders(system)
        .pay_order(order_pb::PayOrderRequest {
            order_no: order.order_no.clone(),
            payment_ref: format!("pay-{}", order.order_no),
            amount_cents: reserved.total_cents,
        })
        .await
        .expect("paid");
    e2e::eventually(Duration::from_secs(15), "a confirmed order", || async {
        (status_of(system, &order.order_no).await == Some(OrderStatus::Confirmed)).then_some(())
    })
    .await;
    started.elapsed()
}

/// Asserts `call` fails with UNAVAILABLE within 5 s; how long it took.
async fn unavailable<T>(
    what: &str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Duration {
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung with the database down"));
    let took = started.elapsed();
    match result {
        Ok(_) => panic!("{what} answered with the database down"),
        Err(status) => assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}"),
    }
    assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_answers_unavailable_turns_not_serving_and_recovers_without_a_restart() {
    let mut postgres = PrivatePostgres::start();
    let system = ProcessSystem::start(
        Dependencies {
            postgres_server: postgres.server(),
            ..Dependencies::shared(5)
        },
        Duration::from_secs(60),
    )
    .await;
    let tier_id = system.put_on_sale(50, 4).await;
    let before = purchase(&system, "early", tier_id).await;
    let order = create(&system, "waiting", tier_id).await.expect("an order");

    postgres.kill();

    // Every service turns NOT_SERVING: none can do its job without its database.
    let started = Instant::now();
    e2e::eventually(
        Duration::from_secs(10),
        "every service NOT_SERVING",
        || async {
            for service in Service::ALL {
                if system.health(service).await != Some(ServingStatus::NotServing) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let not_serving_after = started.elapsed();
    // The admin ports say the same: alive, not ready, and why.
    for service in Service::ALL {
        let admin = system.admins[&service];
        assert_eq!(e2e::admin_port::get(admin, "/livez").await.0, 200);
        let (status, body) = e2e::admin_port::get(admin, "/readyz").await;
        assert_eq!(status, 503, "{service:?}: {body}");
        assert!(body.contains("postgres"), "{service:?}: {body}");
    }

    // Calls that need the database answer UNAVAILABLE within seconds, and change nothing.
    let mut took = vec![
        unavailable("CreateOrder", create(&system, "late", tier_id)).await,
        unavailable(
            "GetOrder",
            orders(&system).get_order(order_pb::GetOrderRequest {
                order_no: order.order_no.clone(),
            }),
        )
        .await,
    ];
    took.push(
        unavailable(
            "CreateShow",
            CatalogServiceClient::new(system.channel(Service::Stock)).create_show(admin(
                stock_pb::CreateShowRequest {
                    title: "Never".into(),
                    venue: "Nowhere".into(),
                },
            )),
        )
        .await,
    );
    took.push(
        unavailable(
            "GetSaga",
            SagaAdminClient::new(system.channel(Service::Orchestrator)).get_saga(admin(
                saga_pb::GetSagaRequest {
                    key: Some(saga_pb::get_saga_request::Key::OrderNo(
                        order.order_no.clone(),
                    )),
                },
            )),
        )
        .await,
    );
    took.push(
        unavailable(
            "ListNotifications",
            NotificationServiceClient::new(system.channel(Service::Notify)).list_notifications(
                notify_pb::ListNotificationsRequest {
                    order_no: order.order_no.clone(),
                },
            ),
        )
        .await,
    );

    // A SIGTERM while the database is down ends the process within the grace period.
    let (stop_took, exit) = system.terminate(Service::Notify);
    assert!(
        stop_took < STOP_WITHIN,
        "notify-svc took {stop_took:?} to stop"
    );
    assert!(exit.success(), "notify-svc exited with {exit:?}");

    // Back: every running service serves again by itself, within 10 s.
    postgres.up();
    let started = Instant::now();
    e2e::eventually(
        Duration::from_secs(10),
        "every service SERVING again",
        || async {
            for service in [Service::Stock, Service::Order, Service::Orchestrator] {
                if system.health(service).await != Some(ServingStatus::Serving) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let serving_after = started.elapsed();
    for service in [Service::Stock, Service::Order, Service::Orchestrator] {
        let admin = system.admins[&service];
        e2e::eventually(Duration::from_secs(5), "ready again", || async {
            (e2e::admin_port::get(admin, "/readyz").await.0 == 200).then_some(())
        })
        .await;
    }
    let order_back = e2e::eventually(Duration::from_secs(10), "CreateOrder again", || async {
        create(&system, "back", tier_id).await.ok()
    })
    .await;
    let recovered_after = started.elapsed();
    assert!(
        recovered_after < Duration::from_secs(10),
        "recovered after {recovered_after:?}"
    );
    system.up(Service::Notify);

    // The order created before the outage and the one after both reach payment, and a whole
    // purchase completes.
    for order_no in [&order.order_no, &order_back.order_no] {
        e2e::eventually(Duration::from_secs(20), "a reserved order", || async {
            (status_of(&system, order_no).await == Some(OrderStatus::AwaitingPayment)).then_some(())
        })
        .await;
    }
    let after = purchase(&system, "later", tier_id).await;
    eprintln!(
        "Postgres down: NOT_SERVING after {not_serving_after:?}, UNAVAILABLE after {took:?}, \
         SIGTERM done in {stop_took:?}; back: SERVING after {serving_after:?}, CreateOrder after \
         {recovered_after:?}; a purchase took {before:?} before, {after:?} after"
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_and_name_server_killed_leave_the_services_serving_and_stopping_in_time() {
    let broker = PrivateBroker::start();
    let mut on = Dependencies::shared(5);
    on.messaging.name_server = broker.name_server();
    let system = ProcessSystem::start(on, Duration::from_secs(60)).await;
    let tier_id = system.put_on_sale(50, 4).await;
    let before = purchase(&system, "early", tier_id).await;

    broker.kill_all();

    // The broker is not a readiness dependency: the gRPC fallback needs every service.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for service in Service::ALL {
        assert_eq!(
            system.health(service).await,
            Some(ServingStatus::Serving),
            "{service:?} with the broker down"
        );
    }
    let during = purchase(&system, "during", tier_id).await;
    assert!(
        during < Duration::from_secs(10),
        "a purchase took {during:?} with the broker down"
    );

    // A SIGTERM with the broker down ends the process within the grace period.
    let (stop_took, exit) = system.terminate(Service::Notify);
    assert!(
        stop_took < STOP_WITHIN,
        "notify-svc took {stop_took:?} to stop"
    );
    assert!(exit.success(), "notify-svc exited with {exit:?}");
    system.up(Service::Notify);

    broker.up();
    let started = Instant::now();
    let after = purchase(&system, "after", tier_id).await;
    let recovered_after = started.elapsed();
    assert!(
        recovered_after < Duration::from_secs(10),
        "a purchase took {recovered_after:?} after the broker came back"
    );
    eprintln!(
        "broker down: a purchase took {during:?} (before: {before:?}), SIGTERM done in \
         {stop_took:?}; back: a purchase took {after:?}"
    );
    system.stop().await;
}
