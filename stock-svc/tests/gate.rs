//! The Redis stock gate against a real Redis (`TICKET_TEST_REDIS`, default
//! redis://127.0.0.1:6379): nothing is sold twice, every fence case, limits and sale windows.

use std::time::{SystemTime, UNIX_EPOCH};

use stock_svc::gate::{
    Fence, FenceOutcome, FenceState, PredeductOutcome, StockGate, TierCounters, TierStock,
};

fn redis_url() -> String {
    std::env::var("TICKET_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A tier id no other test uses.
fn fresh_tier() -> i64 {
    i64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
    .abs()
        % 1_000_000_000_000
}

fn on_sale(tier_id: i64, total: i64, per_user_limit: i64) -> TierStock {
    TierStock {
        tier_id,
        total,
        opens_at_ms: now_ms() - 60_000,
        closes_at_ms: now_ms() + 3_600_000,
        per_user_limit,
        price_cents: 12_500,
        fences: Vec::new(),
    }
}

async fn gate_with(stock: &TierStock) -> StockGate {
    let gate = StockGate::connect(&redis_url(), 8, "test-stock")
        .await
        .expect("Redis (is `scripts/stack.sh up` running?)");
    assert!(gate.load(stock).await.expect("load"));
    gate
}

async fn counters(gate: &StockGate, tier_id: i64) -> TierCounters {
    gate.counters(tier_id)
        .await
        .expect("counters")
        .expect("tier loaded")
}

fn assert_invariant(c: &TierCounters) {
    assert_eq!(c.available + c.deducted + c.confirmed, c.total, "{c:?}");
    assert!(c.available >= 0, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_buyers_for_a_hundred_tickets_get_exactly_a_hundred() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 100, 4)).await;
    let buyers: Vec<_> = (0..2_000)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.prededuct(tier, &format!("ORD-{i}"), &format!("user-{i}"), 1)
                    .await
            })
        })
        .collect();
    let mut deducted = 0;
    let mut sold_out = 0;
    for buyer in buyers {
        match buyer.await.expect("task").expect("prededuct").outcome {
            PredeductOutcome::Deducted => deducted += 1,
            PredeductOutcome::SoldOut => sold_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((deducted, sold_out), (100, 1_900));
    let c = counters(&gate, tier).await;
    assert_eq!(c.available, 0);
    assert_eq!(c.deducted, 100);
    assert!(c.sold_out && gate.is_sold_out(tier).await.expect("flag"));
    assert_invariant(&c);
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_prededuct_gets_the_same_answer_and_deducts_once() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 10, 4)).await;
    let first = gate.prededuct(tier, "ORD-R", "u1", 2).await.expect("first");
    let again = gate.prededuct(tier, "ORD-R", "u1", 2).await.expect("again");
    assert_eq!(first.outcome, PredeductOutcome::Deducted);
    assert_eq!(again.outcome, PredeductOutcome::Deducted);
    assert_eq!(first.unit_price_cents, 12_500);
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted), (8, 2));
    assert_invariant(&c);
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_rollback_succeeds_and_refuses_the_hanging_prededuct() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 10, 4)).await;
    let empty = gate.rollback(tier, "ORD-E").await.expect("rollback");
    assert_eq!(
        (empty.outcome, empty.quantity),
        (FenceOutcome::RolledBack, 0)
    );
    let hanging = gate
        .prededuct(tier, "ORD-E", "u1", 1)
        .await
        .expect("prededuct");
    assert_eq!(hanging.outcome, PredeductOutcome::AlreadyRolledBack);
    let c = counters(&gate, tier).await;
    assert_eq!(
        (c.available, c.deducted),
        (10, 0),
        "the hanging prededuct changed nothing"
    );
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_returns_the_tickets_once_and_clears_sold_out() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 2, 4)).await;
    assert_eq!(
        gate.prededuct(tier, "ORD-A", "u1", 2)
            .await
            .expect("deduct")
            .outcome,
        PredeductOutcome::Deducted
    );
    assert!(gate.is_sold_out(tier).await.expect("flag"));
    for _ in 0..3 {
        let back = gate.rollback(tier, "ORD-A").await.expect("rollback");
        assert_eq!((back.outcome, back.quantity), (FenceOutcome::RolledBack, 2));
    }
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted, c.sold_out), (2, 0, false));
    assert_invariant(&c);
    // The buyer's holding went back too: they may buy again, up to the limit.
    assert_eq!(
        gate.prededuct(tier, "ORD-B", "u1", 2)
            .await
            .expect("again")
            .outcome,
        PredeductOutcome::Deducted
    );
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_after_rollback_and_rollback_after_confirm_are_refused() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 10, 4)).await;
    gate.prededuct(tier, "ORD-1", "u1", 1)
        .await
        .expect("deduct");
    gate.rollback(tier, "ORD-1").await.expect("rollback");
    assert_eq!(
        gate.confirm(tier, "ORD-1").await.expect("confirm").outcome,
        FenceOutcome::AlreadyRolledBack
    );

    gate.prededuct(tier, "ORD-2", "u2", 3)
        .await
        .expect("deduct");
    let confirmed = gate.confirm(tier, "ORD-2").await.expect("confirm");
    assert_eq!(
        (confirmed.outcome, confirmed.quantity),
        (FenceOutcome::Confirmed, 3)
    );
    assert_eq!(
        gate.confirm(tier, "ORD-2").await.expect("repeat").outcome,
        FenceOutcome::Confirmed
    );
    assert_eq!(
        gate.rollback(tier, "ORD-2")
            .await
            .expect("rollback")
            .outcome,
        FenceOutcome::AlreadyConfirmed
    );
    assert_eq!(
        gate.confirm(tier, "ORD-3").await.expect("unknown").outcome,
        FenceOutcome::UnknownOrder
    );

    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted, c.confirmed), (7, 0, 3));
    assert_invariant(&c);
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_user_limit_holds_across_concurrent_orders_of_one_buyer() {
    let tier = fresh_tier();
    let gate = gate_with(&on_sale(tier, 100, 4)).await;
    let orders: Vec<_> = (0..40)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.prededuct(tier, &format!("ORD-U{i}"), "greedy", 1)
                    .await
            })
        })
        .collect();
    let mut deducted = 0;
    for order in orders {
        match order.await.expect("task").expect("prededuct").outcome {
            PredeductOutcome::Deducted => deducted += 1,
            PredeductOutcome::LimitReached => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(deducted, 4);
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted), (96, 4));
    gate.forget(tier).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prededucts_outside_the_sale_window_are_refused() {
    let early = fresh_tier();
    let gate = gate_with(&TierStock {
        opens_at_ms: now_ms() + 3_600_000,
        ..on_sale(early, 10, 4)
    })
    .await;
    assert_eq!(
        gate.prededuct(early, "ORD-1", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::SaleNotOpen
    );
    let late = fresh_tier();
    gate.load(&TierStock {
        closes_at_ms: now_ms() - 1,
        ..on_sale(late, 10, 4)
    })
    .await
    .expect("load");
    assert_eq!(
        gate.prededuct(late, "ORD-1", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::SaleClosed
    );
    for tier in [early, late] {
        let c = counters(&gate, tier).await;
        assert_eq!((c.available, c.deducted), (10, 0));
        gate.forget(tier).await.expect("clean up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_is_loaded_once_and_the_scripts_survive_a_script_flush() {
    let tier = fresh_tier();
    let stock = on_sale(tier, 10, 4);
    let gate = gate_with(&stock).await;
    gate.prededuct(tier, "ORD-1", "u1", 2)
        .await
        .expect("deduct");
    assert!(
        !gate.load(&stock).await.expect("second load"),
        "an existing tier is never loaded twice"
    );
    assert_eq!(counters(&gate, tier).await.available, 8);

    fred::prelude::LuaInterface::script_flush(gate.pool().next(), false)
        .await
        .expect("flush");
    let after = gate
        .prededuct(tier, "ORD-2", "u2", 1)
        .await
        .expect("reloaded on NOSCRIPT");
    assert_eq!(
        (after.outcome, after.available),
        (PredeductOutcome::Deducted, 7)
    );
    gate.forget(tier).await.expect("clean up");
    assert!(gate.counters(tier).await.expect("counters").is_none());
    let missing = gate.prededuct(tier, "ORD-3", "u3", 1).await;
    assert!(matches!(missing, Err(stock_svc::gate::GateError::NotLoaded(t)) if t == tier));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_rebuilt_with_its_fences_keeps_every_promise() {
    let tier = fresh_tier();
    let fence = |order: &str, state, quantity, user: &str| Fence {
        order_no: order.into(),
        state,
        quantity,
        user_id: user.into(),
    };
    let stock = TierStock {
        fences: vec![
            fence("ORD-D", FenceState::Deducted, 3, "u1"),
            fence("ORD-C", FenceState::Confirmed, 1, "u1"),
            fence("ORD-R", FenceState::RolledBack, 2, "u2"),
            fence("ORD-EMPTY", FenceState::RolledBack, 0, ""),
        ],
        ..on_sale(tier, 10, 4)
    };
    let gate = gate_with(&stock).await;
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted, c.confirmed), (6, 3, 1));
    assert_invariant(&c);
    let mut fences = gate.fences(tier).await.expect("fences");
    fences.sort_by(|a, b| a.order_no.cmp(&b.order_no));
    let mut expected = stock.fences.clone();
    expected.sort_by(|a, b| a.order_no.cmp(&b.order_no));
    assert_eq!(fences, expected);
    // u1 holds 4 already (deducted 3 + confirmed 1): the limit holds after the rebuild.
    assert_eq!(
        gate.prededuct(tier, "ORD-NEW", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::LimitReached
    );
    // A rolled-back order stays refused, and a deducted one answers as before.
    assert_eq!(
        gate.prededuct(tier, "ORD-EMPTY", "u3", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::AlreadyRolledBack
    );
    assert_eq!(
        gate.prededuct(tier, "ORD-D", "u1", 3)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::Deducted
    );
    let confirm = gate.confirm(tier, "ORD-D").await.expect("confirm");
    assert_eq!(
        (confirm.outcome, confirm.quantity),
        (FenceOutcome::Confirmed, 3)
    );
    assert_eq!(confirm.user_id, "u1");
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted, c.confirmed), (6, 0, 4));
    gate.forget(tier).await.expect("clean up");
}
