//! stock-svc's `StockService` over gRPC with real Redis and Postgres: nothing sold twice under
//! concurrency, every fence case recorded once in the ledger, the per-user limit (the session's,
//! across its tiers, and a tier's cap) and the sale window, bad input refused with nothing
//! changed, a lost tier rebuilt from the ledger, and drift found and repaired.

#![recursion_limit = "512"]

use std::collections::HashMap;

use e2e::stock::{StockApp, admin};
use futures::future::join_all;
use sea_orm::{ConnectionTrait, Statement};
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::PredeductOutcome;
use tonic::Code;

fn prededuct(order_no: &str, tier_id: i64, user_id: &str, quantity: i32) -> pb::PredeductRequest {
    pb::PredeductRequest {
        order_no: order_no.into(),
        tier_id,
        user_id: user_id.into(),
        quantity,
    }
}

async fn deduct(app: &StockApp, order: &str, tier: i64, user: &str, qty: i32) -> PredeductOutcome {
    let answer = app
        .stock()
        .prededuct(admin(prededuct(order, tier, user, qty)))
        .await
        .expect("prededuct")
        .into_inner();
    answer.outcome()
}

async fn confirm(app: &StockApp, order: &str, tier: i64) -> Result<pb::StockChange, tonic::Status> {
    app.stock()
        .confirm(admin(pb::ConfirmRequest {
            order_no: order.into(),
            tier_id: tier,
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn rollback(
    app: &StockApp,
    order: &str,
    tier: i64,
) -> Result<pb::StockChange, tonic::Status> {
    app.stock()
        .rollback(admin(pb::RollbackRequest {
            order_no: order.into(),
            tier_id: tier,
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// The ledger's rows of a tier: order -> (state, quantity).
async fn ledger(app: &StockApp, tier: i64) -> HashMap<String, (String, i64)> {
    app.db
        .query_all_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "SELECT order_no, state, quantity FROM stock_ledger WHERE tier_id = $1",
            [tier.into()],
        ))
        .await
        .expect("ledger")
        .into_iter()
        .map(|row| {
            (
                row.try_get::<String>("", "order_no").expect("order_no"),
                (
                    row.try_get::<String>("", "state").expect("state"),
                    row.try_get::<i64>("", "quantity").expect("quantity"),
                ),
            )
        })
        .collect()
}

async fn sold(app: &StockApp, tier: i64) -> i64 {
    app.catalog()
        .get_tier(pb::GetTierRequest { tier_id: tier })
        .await
        .expect("get tier")
        .into_inner()
        .sold
}

fn assert_invariant(stock: &pb::Stock) {
    assert_eq!(
        stock.available + stock.deducted + stock.confirmed,
        stock.total,
        "{stock:?}"
    );
    assert!(stock.available >= 0, "{stock:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_buyers_through_the_service_get_exactly_a_hundred_tickets() {
    let app = StockApp::start().await;
    let tier = app.tier(100, 4).await.tier_id;
    let calls = (0..2_000).map(|i| {
        let mut client = app.stock();
        async move {
            client
                .prededuct(admin(prededuct(
                    &format!("ORD-{i}"),
                    tier,
                    &format!("u{i}"),
                    1,
                )))
                .await
                .expect("prededuct")
                .into_inner()
                .outcome()
        }
    });
    let outcomes = join_all(calls).await;
    let deducted = outcomes
        .iter()
        .filter(|o| **o == PredeductOutcome::Deducted)
        .count();
    let sold_out = outcomes
        .iter()
        .filter(|o| **o == PredeductOutcome::SoldOut)
        .count();
    assert_eq!((deducted, sold_out), (100, 1_900));
    let stock = app.stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (0, 100));
    assert!(stock.sold_out);
    assert_invariant(&stock);
    // Every granted ticket is in the ledger before its answer left.
    let rows = ledger(&app, tier).await;
    assert_eq!(rows.len(), 100);
    assert!(rows.values().all(|(state, qty)| state == "D" && *qty == 1));
    let report = app.reconcile(tier).await;
    assert!(!report.drift, "{}", report.report);
    assert_eq!(report.ledger.expect("ledger").available, 0);
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fence_case_is_answered_and_recorded_once() {
    let app = StockApp::start().await;
    let tier = app.tier(10, 4).await.tier_id;

    // The same order sent many times at once: one deduct, one ledger row.
    let same = (0..50).map(|_| deduct(&app, "SAME", tier, "u9", 1));
    let outcomes = join_all(same).await;
    assert!(outcomes.iter().all(|o| *o == PredeductOutcome::Deducted));
    assert_eq!(app.stock_of(tier).await.deducted, 1);
    rollback(&app, "SAME", tier).await.expect("rollback");

    // Repeat: same answer, one deduct, one ledger row.
    assert_eq!(
        deduct(&app, "A", tier, "u1", 2).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "A", tier, "u1", 2).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(app.stock_of(tier).await.deducted, 2);

    // Confirm, twice: `sold` follows the ledger exactly once.
    let confirmed = confirm(&app, "A", tier).await.expect("confirm");
    assert_eq!(
        (confirmed.fence.as_str(), confirmed.quantity),
        ("CONFIRMED", 2)
    );
    confirm(&app, "A", tier).await.expect("repeated confirm");
    assert_eq!(sold(&app, tier).await, 2);

    // Rollback after confirm: refused, nothing returned.
    let refused = rollback(&app, "A", tier).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("confirmed"), "{refused:?}");

    // Rollback returns the tickets once; confirm after rollback is refused.
    assert_eq!(
        deduct(&app, "B", tier, "u2", 3).await,
        PredeductOutcome::Deducted
    );
    let back = rollback(&app, "B", tier).await.expect("rollback");
    assert_eq!((back.fence.as_str(), back.quantity), ("ROLLED_BACK", 3));
    rollback(&app, "B", tier).await.expect("repeated rollback");
    let refused = confirm(&app, "B", tier).await.expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("rolled back"), "{refused:?}");

    // Empty rollback: recorded, and the hanging prededuct that follows is refused.
    let empty = rollback(&app, "C", tier).await.expect("empty rollback");
    assert_eq!((empty.fence.as_str(), empty.quantity), ("ROLLED_BACK", 0));
    assert_eq!(
        deduct(&app, "C", tier, "u3", 1).await,
        PredeductOutcome::AlreadyRolledBack
    );

    // Confirm of an order never deducted: refused.
    let unknown = confirm(&app, "NEVER", tier).await.expect_err("refused");
    assert_eq!(unknown.code(), Code::FailedPrecondition, "{unknown:?}");

    let stock = app.stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (8, 0, 2)
    );
    assert_invariant(&stock);
    let rows = ledger(&app, tier).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows["SAME"], ("R".into(), 1));
    assert_eq!(rows["A"], ("C".into(), 2));
    assert_eq!(rows["B"], ("R".into(), 3));
    assert_eq!(rows["C"], ("R".into(), 0));
    let report = app.reconcile(tier).await;
    assert!(!report.drift, "{}", report.report);
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_holds_across_concurrent_orders_and_the_sale_window_is_kept() {
    let app = StockApp::start().await;
    let tier = app.tier(100, 4).await.tier_id;
    let calls = (0..12).map(|i| {
        let app = &app;
        async move { deduct(app, &format!("LIM-{i}"), tier, "greedy", 1).await }
    });
    let outcomes = join_all(calls).await;
    let granted = outcomes
        .iter()
        .filter(|o| **o == PredeductOutcome::Deducted)
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| **o == PredeductOutcome::LimitReached)
        .count();
    assert_eq!((granted, limited), (4, 8));
    // Another buyer is not held back by the first.
    assert_eq!(
        deduct(&app, "OTHER", tier, "modest", 4).await,
        PredeductOutcome::Deducted
    );

    let early = app.tier_with_window(10, 4, 3_600, 7_200).await.tier_id;
    assert_eq!(
        deduct(&app, "EARLY", early, "u1", 1).await,
        PredeductOutcome::SaleNotOpen
    );
    let late = app.tier_with_window(10, 4, -7_200, -60).await.tier_id;
    assert_eq!(
        deduct(&app, "LATE", late, "u1", 1).await,
        PredeductOutcome::SaleClosed
    );
    for t in [early, late] {
        let stock = app.stock_of(t).await;
        assert_eq!((stock.available, stock.deducted), (10, 0));
        assert!(ledger(&app, t).await.is_empty());
    }
    app.stop(&[tier, early, late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let app = StockApp::start().await;
    let tier = app.tier(10, 4).await.tier_id;
    let cases: Vec<(&str, tonic::Request<pb::PredeductRequest>, Code)> = vec![
        (
            "unknown tier",
            admin(prededuct("X1", 999_999, "u1", 1)),
            Code::NotFound,
        ),
        (
            "zero tier",
            admin(prededuct("X2", 0, "u1", 1)),
            Code::InvalidArgument,
        ),
        (
            "quantity 0",
            admin(prededuct("X3", tier, "u1", 0)),
            Code::InvalidArgument,
        ),
        (
            "negative quantity",
            admin(prededuct("X4", tier, "u1", -2)),
            Code::InvalidArgument,
        ),
        (
            "above the limit",
            admin(prededuct("X5", tier, "u1", 5)),
            Code::InvalidArgument,
        ),
        (
            "empty order number",
            admin(prededuct("", tier, "u1", 1)),
            Code::InvalidArgument,
        ),
        (
            "spaces in the order number",
            admin(prededuct("A B", tier, "u1", 1)),
            Code::InvalidArgument,
        ),
        (
            "over-long order number",
            admin(prededuct(&"N".repeat(65), tier, "u1", 1)),
            Code::InvalidArgument,
        ),
        (
            "empty user",
            admin(prededuct("X6", tier, "", 1)),
            Code::InvalidArgument,
        ),
        (
            "missing token",
            tonic::Request::new(prededuct("X7", tier, "u1", 1)),
            Code::Unauthenticated,
        ),
    ];
    let mut wrong_token = tonic::Request::new(prededuct("X8", tier, "u1", 1));
    wrong_token
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().expect("ascii"));
    let mut cases = cases;
    cases.push(("wrong token", wrong_token, Code::Unauthenticated));
    for (what, request, code) in cases {
        let status = app.stock().prededuct(request).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}: says why");
    }
    let status = app
        .stock()
        .confirm(tonic::Request::new(pb::ConfirmRequest {
            order_no: "X1".into(),
            tier_id: tier,
        }))
        .await
        .expect_err("confirm without token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .stock()
        .rollback(admin(pb::RollbackRequest {
            order_no: String::new(),
            tier_id: tier,
        }))
        .await
        .expect_err("rollback without order");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = app
        .stock()
        .reconcile(pb::ReconcileRequest {
            tier_id: tier,
            repair: true,
        })
        .await
        .expect_err("repair without token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app
        .stock()
        .get_stock(pb::GetStockRequest { tier_id: -1 })
        .await
        .expect_err("negative tier");
    assert_eq!(status.code(), Code::InvalidArgument);

    let stock = app.stock_of(tier).await;
    assert_eq!(
        (stock.available, stock.deducted, stock.confirmed),
        (10, 0, 0)
    );
    assert!(ledger(&app, tier).await.is_empty(), "nothing recorded");
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_redis_lost_is_rebuilt_from_the_ledger_with_its_fences() {
    let app = StockApp::start().await;
    let lost = app.tier(20, 4).await;
    let tier = lost.tier_id;
    assert_eq!(
        deduct(&app, "KEEP", tier, "u1", 3).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "SOLD", tier, "u1", 1).await,
        PredeductOutcome::Deducted
    );
    confirm(&app, "SOLD", tier).await.expect("confirm");
    assert_eq!(
        deduct(&app, "BACK", tier, "u2", 2).await,
        PredeductOutcome::Deducted
    );
    rollback(&app, "BACK", tier).await.expect("rollback");
    rollback(&app, "EMPTY", tier).await.expect("empty rollback");
    let before = app.stock_of(tier).await;

    app.gate()
        .await
        .forget((&lost).into())
        .await
        .expect("Redis loses the tier");

    // The next call finds the tier gone and rebuilds it from the ledger: counters, fences and
    // the buyers' holdings come back, so nothing is sold twice.
    assert_eq!(
        deduct(&app, "EMPTY", tier, "u3", 1).await,
        PredeductOutcome::AlreadyRolledBack,
        "the empty rollback's fence survives"
    );
    let after = app.stock_of(tier).await;
    assert_eq!(
        (after.available, after.deducted, after.confirmed),
        (before.available, before.deducted, before.confirmed)
    );
    assert_eq!(
        (after.available, after.deducted, after.confirmed),
        (16, 3, 1)
    );
    assert_eq!(
        deduct(&app, "MORE", tier, "u1", 1).await,
        PredeductOutcome::LimitReached,
        "u1 still holds 4"
    );
    let confirmed = confirm(&app, "KEEP", tier)
        .await
        .expect("confirm after rebuild");
    assert_eq!(confirmed.quantity, 3);
    assert_eq!(sold(&app, tier).await, 4);
    let report = app.reconcile(tier).await;
    assert!(!report.drift, "{}", report.report);
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_when_it_persists_and_repaired_from_the_ledger() {
    let app = StockApp::start().await;
    let tier = app.tier(10, 4).await.tier_id;
    assert_eq!(
        deduct(&app, "D1", tier, "u1", 2).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "D2", tier, "u2", 1).await,
        PredeductOutcome::Deducted
    );
    // A fence in Redis with no record: what a crash between script and ledger leaves.
    app.db
        .execute_unprepared("DELETE FROM stock_ledger WHERE order_no = 'D2'")
        .await
        .expect("lose a record");

    let report = app.reconcile(tier).await;
    assert!(report.drift, "{}", report.report);
    assert_eq!(report.drifting_orders, vec!["D2".to_owned()]);
    assert_eq!(report.redis.expect("redis").deducted, 3);
    assert_eq!(report.ledger.expect("ledger").deducted, 2);

    let stock = stock_svc::stock::Stock::new(app.db.clone(), app.db.clone(), app.gate().await, 1);
    let mut watch = stock_svc::drift::DriftWatch::new(stock);
    assert!(
        watch.check_once().await.expect("check").is_empty(),
        "one sighting may be a command in flight"
    );
    let persistent = watch.check_once().await.expect("check");
    assert_eq!(persistent.len(), 1);
    assert_eq!(persistent[0].drifting_orders, vec!["D2".to_owned()]);

    let repaired = app
        .stock()
        .reconcile(admin(pb::ReconcileRequest {
            tier_id: tier,
            repair: true,
        }))
        .await
        .expect("repair")
        .into_inner();
    assert!(!repaired.drift, "{}", repaired.report);
    let stock = app.stock_of(tier).await;
    assert_eq!((stock.available, stock.deducted), (8, 2));
    // The order whose record was lost never heard yes; its retry deducts again, recorded.
    assert_eq!(
        deduct(&app, "D2", tier, "u2", 1).await,
        PredeductOutcome::Deducted
    );
    assert!(!app.reconcile(tier).await.drift);
    app.stop(&[tier]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_counts_every_tier_of_the_session() {
    let app = StockApp::start().await;
    // A session where a buyer may hold 4 tickets: tiers A and B with no cap of their own, C
    // capped at 1 ticket per buyer; and a tier of another session, also 4 per buyer.
    let session = app.session(4).await;
    let a = app.tier_in(session.session_id, "A", 10, 0).await;
    let b = app.tier_in(session.session_id, "B", 10, 0).await;
    let c = app.tier_in(session.session_id, "C", 10, 1).await;
    assert_eq!((a.per_user_limit, c.per_user_limit), (4, 1));
    let elsewhere = app.tier(10, 4).await;
    let (a_id, b_id, c_id) = (a.tier_id, b.tier_id, c.tier_id);

    assert_eq!(
        deduct(&app, "A1", a_id, "fan", 3).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "B1", b_id, "fan", 2).await,
        PredeductOutcome::LimitReached,
        "3 held in tier A + 2 in tier B of the same session is above the session's 4"
    );
    assert_eq!(
        deduct(&app, "X1", elsewhere.tier_id, "fan", 2).await,
        PredeductOutcome::Deducted,
        "another session counts on its own"
    );
    assert_eq!(
        deduct(&app, "B2", b_id, "fan", 1).await,
        PredeductOutcome::Deducted,
        "up to the session's limit"
    );

    // The tier's cap: a second ticket of C is refused, even with room left in the session.
    assert_eq!(
        deduct(&app, "C1", c_id, "cap", 1).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "C2", c_id, "cap", 1).await,
        PredeductOutcome::LimitReached
    );
    let status = app
        .stock()
        .prededuct(admin(prededuct("C3", c_id, "other", 2)))
        .await
        .expect_err("2 of a tier capped at 1 in one order");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Redis loses tier A's keys: the buyer's holdings in it still count, before and after A
    // is rebuilt from the ledger (once, beside B, whose keys Redis kept).
    let gate = app.gate().await;
    gate.forget((&a).into()).await.expect("Redis loses tier A");
    assert_eq!(
        deduct(&app, "B3", b_id, "fan", 1).await,
        PredeductOutcome::LimitReached
    );
    assert_eq!(
        deduct(&app, "A2", a_id, "fan", 1).await,
        PredeductOutcome::LimitReached,
        "tier A rebuilt from the ledger: fan still holds 4 in the session"
    );
    assert_eq!(
        gate.held_in_session(session.session_id, "fan")
            .await
            .expect("held"),
        4,
        "the rebuilt tier's holdings are counted once"
    );
    let rebuilt = app.stock_of(a_id).await;
    assert_eq!((rebuilt.available, rebuilt.deducted), (7, 3));

    // Redis loses the whole session: the first call rebuilds every tier of it.
    let tiers = [a_id, b_id, c_id];
    gate.forget_session(session.session_id, &tiers)
        .await
        .expect("Redis loses the session");
    assert_eq!(
        deduct(&app, "B4", b_id, "fan", 1).await,
        PredeductOutcome::LimitReached,
        "tier B rebuilt, and A with it: fan still holds 4"
    );
    assert_eq!(
        deduct(&app, "C4", c_id, "cap", 1).await,
        PredeductOutcome::LimitReached,
        "the tier's cap survives the rebuild"
    );

    // A rollback frees the session's count.
    let back = rollback(&app, "A1", a_id).await.expect("rollback");
    assert_eq!(back.quantity, 3);
    assert_eq!(
        deduct(&app, "B5", b_id, "fan", 3).await,
        PredeductOutcome::Deducted
    );
    assert_eq!(
        deduct(&app, "A3", a_id, "fan", 1).await,
        PredeductOutcome::LimitReached
    );

    for tier in [a_id, b_id, c_id, elsewhere.tier_id] {
        assert_invariant(&app.stock_of(tier).await);
        let report = app.reconcile(tier).await;
        assert!(!report.drift, "{}", report.report);
    }
    app.stop(&[a_id, b_id, c_id, elsewhere.tier_id]).await;
}
