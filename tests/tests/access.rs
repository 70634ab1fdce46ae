//! Who may call what (docs/SECURITY.md), with the production profile: a buyer reaches only
//! their own orders and names only themself; payments come from the payment callback; admin
//! and service calls need their own tokens, and a credential on a call it does not open is
//! refused; `CreateOrder` is limited per buyer and per peer; a client's deadline ends a call.

#![recursion_limit = "512"]

use std::time::{Duration, Instant};

use e2e::auth::{self, bearer, buyer, buyer_token_signed, payment, service};
use e2e::order::OrderApp;
use e2e::stock::{StockApp, admin};
use ticket_platform::rate_limit::Rate;
use ticket_proto::order::v1 as pb;
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::stock::v1 as stock_pb;
use tonic::Code;
use tonic_types::StatusExt;

/// order-svc with the production profile (every call needs its credential), changed by
/// `change`.
async fn strict_orders(stock: &StockApp, change: impl FnOnce(&mut order_svc::Config)) -> OrderApp {
    let database = e2e::fresh_database_config("t_order_").await;
    OrderApp::start_configured(stock, database, false, None, |config| {
        config.service.access = auth::strict();
        change(config);
    })
    .await
}

fn create(user_id: &str, tier_id: i64, request_id: &str) -> pb::CreateOrderRequest {
    pb::CreateOrderRequest {
        user_id: user_id.into(),
        tier_id,
        quantity: 1,
        request_id: request_id.into(),
        wait_for_decision: false,
        contact: None,
    }
}

fn code<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Code {
    answer.map_or_else(|status| status.code(), |_| Code::Ok)
}

#[tokio::test]
async fn a_buyer_reaches_only_their_own_orders_and_names_only_themself() {
    let stock = StockApp::start().await;
    let tier = stock.tier(100, 4).await;
    let orders = strict_orders(&stock, |_| {}).await;
    let mut client = orders.orders();

    // No credential, a forged one, an expired one: nobody.
    let forged = buyer_token_signed("ann", "another-secret-of-thirty-two-bytes!!", 600);
    let expired = buyer_token_signed("ann", auth::BUYER_SECRET, -600);
    for request in [
        tonic::Request::new(create("ann", tier.tier_id, "r0")),
        bearer(&forged, create("ann", tier.tier_id, "r0")),
        bearer(&expired, create("ann", tier.tier_id, "r0")),
        bearer("not-a-token", create("ann", tier.tier_id, "r0")),
    ] {
        assert_eq!(
            code(client.create_order(request).await),
            Code::Unauthenticated
        );
    }
    // Ann cannot order as Bob; with her token and no user_id, the order is hers.
    let as_bob = client
        .create_order(buyer("ann", create("bob", tier.tier_id, "r1")))
        .await;
    assert_eq!(code(as_bob), Code::PermissionDenied);
    assert_eq!(orders.count().await, 0, "refused calls wrote nothing");
    let ann = client
        .create_order(buyer("ann", create("", tier.tier_id, "r1")))
        .await
        .expect("ann orders")
        .into_inner();
    assert_eq!(ann.user_id, "ann");

    // Bob sees Ann's order as one that does not exist, whatever he calls.
    let unknown = client
        .get_order(buyer(
            "bob",
            pb::GetOrderRequest {
                order_no: "T000NOSUCHORDER".into(),
            },
        ))
        .await
        .expect_err("unknown");
    let get = client
        .get_order(buyer(
            "bob",
            pb::GetOrderRequest {
                order_no: ann.order_no.clone(),
            },
        ))
        .await
        .expect_err("another's");
    assert_eq!(
        (get.code(), unknown.code()),
        (Code::NotFound, Code::NotFound)
    );
    assert_eq!(
        get.message().replace(&ann.order_no, "X"),
        unknown.message().replace("T000NOSUCHORDER", "X"),
        "the answer does not confirm the order number"
    );
    let watch = client
        .watch_order(buyer(
            "bob",
            pb::WatchOrderRequest {
                order_no: ann.order_no.clone(),
            },
        ))
        .await;
    assert_eq!(code(watch), Code::NotFound);
    let cancel = client
        .cancel_order(buyer(
            "bob",
            pb::CancelOrderRequest {
                order_no: ann.order_no.clone(),
                reason: String::new(),
            },
        ))
        .await;
    assert_eq!(code(cancel), Code::NotFound);
    let listed = client
        .list_orders(buyer(
            "bob",
            pb::ListOrdersRequest {
                user_id: "ann".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(code(listed), Code::PermissionDenied);
    let own = client
        .list_orders(buyer("bob", pb::ListOrdersRequest::default()))
        .await
        .expect("bob's own")
        .into_inner();
    assert!(own.orders.is_empty());

    // Ann sees and cancels her own; an operator sees anyone's.
    let mine = client
        .list_orders(buyer("ann", pb::ListOrdersRequest::default()))
        .await
        .expect("ann's own")
        .into_inner();
    assert_eq!(mine.orders.len(), 1);
    let seen = client
        .get_order(admin(pb::GetOrderRequest {
            order_no: ann.order_no.clone(),
        }))
        .await
        .expect("an operator reads any order")
        .into_inner();
    assert_eq!(
        seen.status(),
        pb::OrderStatus::Pending,
        "Bob's cancel changed nothing"
    );

    // Payments come from the payment callback, not from a buyer or an operator.
    let pay = |order_no: &str| pb::PayOrderRequest {
        order_no: order_no.into(),
        payment_ref: "p1".into(),
        amount_cents: ann.total_cents,
    };
    assert_eq!(
        code(client.pay_order(buyer("ann", pay(&ann.order_no))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(client.pay_order(admin(pay(&ann.order_no))).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            client
                .pay_order(tonic::Request::new(pay(&ann.order_no)))
                .await
        ),
        Code::Unauthenticated
    );
    let paid = client.pay_order(payment(pay(&ann.order_no))).await;
    assert!(
        !matches!(code(paid), Code::PermissionDenied | Code::Unauthenticated),
        "the payment token opens PayOrder"
    );
    let cancelled = client
        .cancel_order(buyer(
            "ann",
            pb::CancelOrderRequest {
                order_no: ann.order_no.clone(),
                reason: String::new(),
            },
        ))
        .await;
    assert_ne!(code(cancelled), Code::NotFound);
    orders.stop().await;
    stock.stop(&[tier.tier_id]).await;
}

#[tokio::test]
async fn admin_and_service_calls_take_only_their_own_tokens() {
    let stock = StockApp::start().await;
    let show = stock_pb::CreateShowRequest {
        title: "Gala".into(),
        venue: "Hall".into(),
    };
    let mut catalog = stock.catalog();
    // A buyer's token or the service token opens no admin call; no token, a wrong one: who?
    for (request, expected) in [
        (buyer("ann", show.clone()), Code::PermissionDenied),
        (service(show.clone()), Code::PermissionDenied),
        (tonic::Request::new(show.clone()), Code::Unauthenticated),
        (
            bearer("stock-test-tokem", show.clone()),
            Code::Unauthenticated,
        ),
        (
            bearer(&format!("{}x", e2e::stock::TOKEN), show.clone()),
            Code::Unauthenticated,
        ),
    ] {
        assert_eq!(code(catalog.create_show(request).await), expected);
    }
    assert_eq!(code(catalog.create_show(admin(show)).await), Code::Ok);
    // `Participant.Execute` takes the service token only.
    let mut participant = ParticipantClient::new(stock.channel.clone());
    for (request, expected) in [
        (admin(Command::default()), Code::PermissionDenied),
        (buyer("ann", Command::default()), Code::PermissionDenied),
        (
            tonic::Request::new(Command::default()),
            Code::Unauthenticated,
        ),
        // Past the credential: the empty command is refused for what it is.
        (service(Command::default()), Code::InvalidArgument),
    ] {
        assert_eq!(code(participant.execute(request).await), expected);
    }
    stock.halt().await;
}

#[tokio::test]
async fn create_order_is_limited_per_buyer_and_per_peer_with_a_retry_delay() {
    let stock = StockApp::start().await;
    let tier = stock.tier(100, 100).await;
    let orders = strict_orders(&stock, |config| {
        config.guard.per_buyer = Rate {
            per_second: 0.5,
            burst: 3,
        };
        // Every call takes from the peer's bucket first, a refused one too.
        config.guard.per_peer = Rate {
            per_second: 0.5,
            burst: 6,
        };
    })
    .await;
    let mut client = orders.orders();
    for i in 0..3 {
        client
            .create_order(buyer("ann", create("", tier.tier_id, &format!("a{i}"))))
            .await
            .expect("within ann's burst");
    }
    let refused = client
        .create_order(buyer("ann", create("", tier.tier_id, "a3")))
        .await
        .expect_err("ann's burst is spent");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("user ann"),
        "{}",
        refused.message()
    );
    let delay = refused
        .get_details_retry_info()
        .and_then(|retry| retry.retry_delay)
        .expect("a RetryInfo in the status details");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(2),
        "{delay:?}"
    );
    assert_eq!(orders.count().await, 3, "the refused call wrote nothing");
    // Others still order, until this peer's burst (6) is spent.
    for user in ["bob", "cat"] {
        client
            .create_order(buyer(user, create("", tier.tier_id, "b0")))
            .await
            .expect("another buyer, within the peer's burst");
    }
    let peer = client
        .create_order(buyer("dan", create("", tier.tier_id, "d0")))
        .await
        .expect_err("the peer's burst is spent");
    assert_eq!(peer.code(), Code::ResourceExhausted);
    assert!(
        peer.message().contains("peer 127.0.0.1"),
        "{}",
        peer.message()
    );
    assert!(peer.get_details_retry_info().is_some());
    orders.stop().await;
    stock.stop(&[tier.tier_id]).await;
}

#[tokio::test]
async fn a_clients_deadline_ends_a_call_and_one_connection_runs_at_most_its_limit() {
    let stock = StockApp::start().await;
    let tier = stock.tier(100, 100).await;
    // No orchestrator: a CreateOrder that waits for its decision waits its whole wait.
    let orders = strict_orders(&stock, |config| {
        config.decision_wait = Duration::from_secs(1);
        config.service.grpc.concurrency_per_connection = 1;
    })
    .await;
    let waiting = |user: &str, deadline: Option<&str>| {
        let mut request = buyer(
            user,
            pb::CreateOrderRequest {
                wait_for_decision: true,
                ..create("", tier.tier_id, "w")
            },
        );
        if let Some(deadline) = deadline {
            request
                .metadata_mut()
                .insert("grpc-timeout", deadline.parse().expect("ascii"));
        }
        request
    };
    let mut client = orders.orders();
    let started = Instant::now();
    let ended = client
        .create_order(waiting("ann", Some("200m")))
        .await
        .expect_err("the deadline passes first");
    assert!(
        matches!(ended.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{ended:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Two calls of a second each on one connection that runs one at a time: in turn.
    let started = Instant::now();
    let (mut a, mut b) = (client.clone(), client.clone());
    let (first, second) = tokio::join!(
        a.create_order(waiting("bob", None)),
        b.create_order(waiting("cat", None)),
    );
    for answer in [first, second] {
        assert_eq!(
            code(answer),
            Code::DeadlineExceeded,
            "not decided within the wait"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    orders.stop().await;
    stock.stop(&[tier.tier_id]).await;
}

#[tokio::test]
async fn a_buyer_lists_only_the_notifications_of_their_own_orders() {
    use ticket_proto::notify::v1 as notify_pb;
    use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;

    // The tests' dev profile: a presented buyer token is verified and binds all the same.
    let system = e2e::system::System::start(
        e2e::saga::settings(Duration::from_secs(300)),
        orchestrator::dispatch::Transport::RocketMq,
    )
    .await;
    let tier = system.stock().tier(10, 4).await;
    let order = system.reserved_order("ann", tier.tier_id, 1, "n1").await;
    system.order.cancel(&order.order_no).await;
    system.told(&order.order_no, "order_cancelled").await;
    let mut notify = NotificationServiceClient::new(system.notify.channel.clone());
    let list = |user: &str| {
        buyer(
            user,
            notify_pb::ListNotificationsRequest {
                order_no: order.order_no.clone(),
            },
        )
    };
    let ann = notify
        .list_notifications(list("ann"))
        .await
        .expect("ann's")
        .into_inner();
    assert_eq!(ann.notifications.len(), 3, "{ann:?}");
    let bob = notify
        .list_notifications(list("bob"))
        .await
        .expect("an empty list, as for an unknown order")
        .into_inner();
    assert!(bob.notifications.is_empty(), "{bob:?}");
    let forged = bearer(
        &buyer_token_signed("ann", "another-secret-of-thirty-two-bytes!!", 600),
        notify_pb::ListNotificationsRequest {
            order_no: order.order_no.clone(),
        },
    );
    assert_eq!(
        code(notify.list_notifications(forged).await),
        Code::Unauthenticated
    );
    system.stop(&[tier.tier_id]).await;
}
