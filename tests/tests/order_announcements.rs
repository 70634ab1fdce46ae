//! An order change is one statement: the order's row, its event in the outbox and its
//! announcement to `WatchOrder` streams (`pg_notify`). What a replica hears is what clients
//! read, and what the event says is what the row says.

use std::time::Duration;

use e2e::order::OrderApp;
use e2e::stock::StockApp;
use prost::Message;
use sea_orm::{ConnectionTrait, Statement};
use sqlx::postgres::PgListener;
use ticket_platform::time::timestamp;
use ticket_proto::order::v1 as pb;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{
    Command, OrderCancelled, OrderConfirm, OrderCreated, OrderPaid, OrderReserve, ReplyOutcome,
};

const WAIT: Duration = Duration::from_secs(10);

/// The next announcement: its order number, and the version and order it carries.
async fn heard(listener: &mut PgListener) -> (String, i64, pb::Order) {
    let notification = tokio::time::timeout(WAIT, listener.recv())
        .await
        .expect("an announcement in time")
        .expect("the listener");
    let (order_no, carried) = order_svc::announcement::read(notification.payload());
    let (version, order) = carried.unwrap_or_else(|| {
        panic!(
            "the announcement carries its order: {}",
            notification.payload()
        )
    });
    (order_no.to_owned(), version, order)
}

async fn command(app: &OrderApp, order_no: &str, step: &str, body: Body) {
    let reply = app
        .participant()
        .execute(e2e::auth::service(Command {
            saga_id: format!("saga-{order_no}"),
            order_no: order_no.into(),
            step: step.into(),
            attempt: 1,
            body: Some(body),
        }))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(reply.outcome(), ReplyOutcome::Ok, "{reply:?}");
}

/// The payload of the outbox row of `order_no` under `tag`.
async fn event_of<M: Message + Default>(app: &OrderApp, order_no: &str, tag: &str) -> M {
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT payload FROM outbox WHERE message_key = $1 AND tag = $2",
            [order_no.into(), tag.into()],
        ))
        .await
        .expect("outbox")
        .unwrap_or_else(|| panic!("{order_no} has a {tag} event"));
    let payload: Vec<u8> = row.try_get("", "payload").expect("payload");
    M::decode(&payload[..]).expect("an event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_announced_with_the_order_clients_read_and_its_event_agrees() {
    let stock = StockApp::start().await;
    let app = OrderApp::start(&stock).await;
    let tier = stock.tier(100, 4).await.tier_id;
    let mut listener = PgListener::connect(&app.database.url)
        .await
        .expect("listener");
    listener
        .listen(order_svc::orders::CHANGES_CHANNEL)
        .await
        .expect("listen");

    let contact = pb::Contact {
        email: "buyer@example.com".into(),
        ..Default::default()
    };
    let created = app
        .create_for("announced", tier, 2, "a1", Some(contact))
        .await
        .expect("create");
    let order_no = created.order_no.clone();
    assert_eq!(
        heard(&mut listener).await,
        (order_no.clone(), 1, created.clone())
    );
    let created_event: OrderCreated = event_of(&app, &order_no, "ORDER_CREATED").await;
    assert_eq!(created_event.created_at, created.created_at);
    assert_eq!((created_event.tier_id, created_event.quantity), (tier, 2));
    let row = app
        .db
        .query_one_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT email FROM order_contact WHERE order_no = $1",
            [order_no.clone().into()],
        ))
        .await
        .expect("contact")
        .expect("the contact is kept with the order");
    assert_eq!(
        row.try_get::<String>("", "email").expect("email"),
        "buyer@example.com"
    );

    let expire_at = chrono::Utc::now() + chrono::Duration::seconds(300);
    let reserve = Body::OrderReserve(OrderReserve {
        unit_price_cents: 12_500,
        expire_at: Some(timestamp(expire_at)),
    });
    command(&app, &order_no, "ORDER_RESERVE", reserve.clone()).await;
    let (_, version, reserved) = heard(&mut listener).await;
    assert_eq!((version, reserved.clone()), (2, app.get(&order_no).await));
    assert_eq!(reserved.status(), pb::OrderStatus::AwaitingPayment);

    let paid = app
        .orders()
        .pay_order(pb::PayOrderRequest {
            order_no: order_no.clone(),
            payment_ref: "pay-a1".into(),
            amount_cents: 25_000,
        })
        .await
        .expect("pay")
        .into_inner();
    assert_eq!(
        heard(&mut listener).await,
        (order_no.clone(), 3, paid.clone())
    );
    let paid_event: OrderPaid = event_of(&app, &order_no, "ORDER_PAID").await;
    assert_eq!(paid_event.paid_at, paid.updated_at);
    assert_eq!(paid_event.amount_cents, 25_000);

    command(
        &app,
        &order_no,
        "ORDER_CONFIRM",
        Body::OrderConfirm(OrderConfirm {}),
    )
    .await;
    let (_, version, confirmed) = heard(&mut listener).await;
    assert_eq!(
        (version, confirmed.status()),
        (4, pb::OrderStatus::Confirmed)
    );

    // A change that cannot happen writes, announces and publishes nothing.
    let refused = app
        .orders()
        .cancel_order(pb::CancelOrderRequest {
            order_no: order_no.clone(),
            reason: String::new(),
        })
        .await
        .expect_err("a confirmed order is not cancelled");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    let other = app
        .create("announced", tier, 1, "a2")
        .await
        .expect("create");
    let (heard_no, _, _) = heard(&mut listener).await;
    assert_eq!(heard_no, other.order_no, "nothing was announced in between");
    command(&app, &other.order_no, "ORDER_RESERVE", reserve).await;
    assert_eq!(heard(&mut listener).await.1, 2);
    // A payment reference pays one order: reused, it is refused, and nothing is written.
    let reused = app
        .orders()
        .pay_order(pb::PayOrderRequest {
            order_no: other.order_no.clone(),
            payment_ref: "pay-a1".into(),
            amount_cents: 12_500,
        })
        .await
        .expect_err("a payment reference pays one order");
    assert_eq!(reused.code(), tonic::Code::AlreadyExists, "{reused:?}");
    assert_eq!(
        reused.message(),
        "payment_ref pay-a1 was already used for another order"
    );
    let cancelled = app.cancel(&other.order_no).await;
    assert_eq!(
        heard(&mut listener).await,
        (other.order_no.clone(), 3, cancelled.clone())
    );
    let cancelled_event: OrderCancelled = event_of(&app, &other.order_no, "ORDER_CANCELLED").await;
    assert_eq!(cancelled_event.cancelled_at, cancelled.updated_at);
    let events = app
        .db
        .query_one_raw(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT count(*) AS n FROM outbox",
        ))
        .await
        .expect("outbox")
        .expect("a count");
    assert_eq!(
        events.try_get::<i64>("", "n").expect("n"),
        4,
        "created, paid, created, cancelled"
    );

    app.stop().await;
    stock.stop(&[tier]).await;
}
