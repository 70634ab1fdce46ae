//! New orders written together: a burst of CreateOrders (the opening of a sale) is written in
//! a few transactions, every call answered with its own order; and an order the database
//! refuses fails alone while the orders batched with it are written.

use std::collections::HashSet;

use e2e::admin_port::{Scrape, grew};
use e2e::order::OrderApp;
use e2e::stock::StockApp;
use futures::future::join_all;
use sea_orm::ConnectionTrait;
use ticket_proto::order::v1::OrderStatus;
use tonic::Code;

const BURST: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_new_orders_takes_a_few_transactions_and_a_refused_one_fails_alone() {
    let stock = StockApp::start().await;
    let orders = OrderApp::start(&stock).await;
    let tier = stock.tier(1_000, 4).await.tier_id;

    let before = Scrape::of(orders.admin).await;
    let created = join_all((0..BURST).map(|i| {
        let orders = &orders;
        async move {
            orders
                .create(&format!("opener{i}"), tier, 1, &format!("req-{i}"))
                .await
        }
    }))
    .await;
    let after = Scrape::of(orders.admin).await;
    let mut numbers = HashSet::new();
    for (i, order) in created.into_iter().enumerate() {
        let order = order.unwrap_or_else(|status| panic!("buyer {i}: {status:?}"));
        assert_eq!(order.status(), OrderStatus::Pending);
        assert_eq!(
            order.user_id,
            format!("opener{i}"),
            "each call gets its own order"
        );
        numbers.insert(order.order_no);
    }
    assert_eq!(numbers.len(), BURST);
    assert_eq!(orders.count().await, i64::try_from(BURST).expect("count"));
    let written = grew(&before, &after, "orders_create_batch_sum");
    let transactions = grew(&before, &after, "orders_create_batch_count");
    assert_eq!(
        written, BURST as f64,
        "every new order in one committed batch"
    );
    assert!(
        transactions < (BURST / 2) as f64,
        "{BURST} orders took {transactions} transactions"
    );

    // The database refuses one buyer's order: its batch fails, and is written again one order
    // per transaction, so only that call fails.
    orders
        .db
        .execute_unprepared(
            "CREATE FUNCTION refuse_a_buyer() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.user_id = 'refused' THEN RAISE EXCEPTION 'this buyer is refused'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_a_buyer BEFORE INSERT ON orders
                 FOR EACH ROW EXECUTE FUNCTION refuse_a_buyer();",
        )
        .await
        .expect("a trigger that refuses one buyer");
    let answers = join_all((0..40).map(|i| {
        let orders = &orders;
        async move {
            let user = if i == 20 {
                "refused".to_owned()
            } else {
                format!("later{i}")
            };
            (
                user.clone(),
                orders.create(&user, tier, 1, "req-later").await,
            )
        }
    }))
    .await;
    for (user, answer) in answers {
        match answer {
            Ok(order) => {
                assert_ne!(user, "refused");
                assert_eq!(order.user_id, user);
                assert_eq!(order.status(), OrderStatus::Pending);
            }
            Err(status) => {
                assert_eq!(user, "refused", "{status:?}");
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            }
        }
    }
    assert_eq!(
        orders.count().await,
        i64::try_from(BURST + 39).expect("count"),
        "every order but the refused one written"
    );
    orders.stop().await;
    stock.stop(&[tier]).await;
}
