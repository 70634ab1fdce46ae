//! The Redis stock gate against a real Redis (`TICKET_TEST_REDIS`, default
//! redis://127.0.0.1:6379): nothing is sold twice, every fence case, the per-buyer limit across
//! a session's tiers and a tier's cap, sale windows, and a session loaded from its fences
//! without counting a buyer's holdings twice.

use std::time::{SystemTime, UNIX_EPOCH};

use stock_svc::gate::{
    Fence, FenceOutcome, FenceState, PredeductOutcome, SessionLoad, SessionStock, StockGate,
    TierCounters, TierRef, TierStock,
};

const KEY_PREFIX: &str = "test-stock";

fn redis_url() -> String {
    std::env::var("TICKET_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An id no other test uses.
fn fresh_id() -> i64 {
    i64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    )
    .abs()
        % 1_000_000_000_000
}

/// A tier of a session no other test uses.
fn fresh_tier() -> TierRef {
    TierRef {
        session_id: fresh_id(),
        tier_id: fresh_id(),
    }
}

/// A tier on sale now, with no cap per buyer of its own and no fences.
fn tier_on_sale(tier_id: i64, total: i64) -> TierStock {
    TierStock {
        tier_id,
        total,
        opens_at_ms: now_ms() - 60_000,
        closes_at_ms: now_ms() + 3_600_000,
        tier_limit: 0,
        price_cents: 12_500,
        fences: Some(Vec::new()),
    }
}

/// `tier`'s session with `tier` alone in it: `total` tickets, `per_user_limit` per buyer.
fn on_sale(tier: TierRef, total: i64, per_user_limit: i64) -> SessionStock {
    SessionStock {
        session_id: tier.session_id,
        per_user_limit,
        tiers: vec![tier_on_sale(tier.tier_id, total)],
    }
}

async fn connect() -> StockGate {
    StockGate::connect(&redis_url(), 8, KEY_PREFIX)
        .await
        .expect("Redis (is `scripts/stack.sh up` running?)")
}

async fn gate_with(stock: &SessionStock) -> StockGate {
    let gate = connect().await;
    let every_tier = stock.tiers.iter().map(|t| t.tier_id).collect();
    assert_eq!(
        gate.load(stock, "stamp").await.expect("load"),
        SessionLoad::Loaded(every_tier)
    );
    gate
}

async fn counters(gate: &StockGate, tier: TierRef) -> TierCounters {
    gate.counters(tier)
        .await
        .expect("counters")
        .expect("tier loaded")
}

/// Forgets every key of session `session_id` and its `tiers`.
async fn clean_up(gate: &StockGate, session_id: i64, tiers: &[i64]) {
    gate.forget_session(session_id, tiers)
        .await
        .expect("clean up");
}

fn fence(order: &str, state: FenceState, quantity: i64, user: &str) -> Fence {
    Fence {
        order_no: order.into(),
        state,
        quantity,
        user_id: user.into(),
    }
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prededucts_outside_the_sale_window_are_refused() {
    let early = fresh_tier();
    let mut not_yet = on_sale(early, 10, 4);
    not_yet.tiers[0].opens_at_ms = now_ms() + 3_600_000;
    let gate = gate_with(&not_yet).await;
    assert_eq!(
        gate.prededuct(early, "ORD-1", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::SaleNotOpen
    );
    let late = fresh_tier();
    let mut closed = on_sale(late, 10, 4);
    closed.tiers[0].closes_at_ms = now_ms() - 1;
    gate.load(&closed, "stamp").await.expect("load");
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
        clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
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
    assert_eq!(
        gate.load(&stock, "stamp").await.expect("second load"),
        SessionLoad::Loaded(Vec::new()),
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
    gate.forget(tier).await.expect("forget the tier");
    assert!(gate.counters(tier).await.expect("counters").is_none());
    let missing = gate.prededuct(tier, "ORD-3", "u3", 1).await;
    assert!(matches!(missing, Err(stock_svc::gate::GateError::NotLoaded(t)) if t == tier.tier_id));
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_rebuilt_with_its_fences_keeps_every_promise() {
    let tier = fresh_tier();
    let fences = vec![
        fence("ORD-D", FenceState::Deducted, 3, "u1"),
        fence("ORD-C", FenceState::Confirmed, 1, "u1"),
        fence("ORD-R", FenceState::RolledBack, 2, "u2"),
        fence("ORD-EMPTY", FenceState::RolledBack, 0, ""),
    ];
    let mut stock = on_sale(tier, 10, 4);
    stock.tiers[0].fences = Some(fences.clone());
    let gate = gate_with(&stock).await;
    let c = counters(&gate, tier).await;
    assert_eq!((c.available, c.deducted, c.confirmed), (6, 3, 1));
    assert_invariant(&c);
    let mut loaded = gate.fences(tier).await.expect("fences");
    loaded.sort_by(|a, b| a.order_no.cmp(&b.order_no));
    let mut expected = fences;
    expected.sort_by(|a, b| a.order_no.cmp(&b.order_no));
    assert_eq!(loaded, expected);
    // u1 holds 4 already (deducted 3 + confirmed 1): the limit holds after the rebuild.
    assert_eq!(
        gate.held_in_session(tier.session_id, "u1")
            .await
            .expect("held"),
        4
    );
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
    clean_up(&gate, tier.session_id, &[tier.tier_id]).await;
}

/// A session of `per_user_limit` per buyer with tiers of 100 tickets, one per cap in `caps`.
fn session_of(per_user_limit: i64, caps: &[i64]) -> SessionStock {
    SessionStock {
        session_id: fresh_id(),
        per_user_limit,
        tiers: caps
            .iter()
            .map(|&cap| TierStock {
                tier_limit: cap,
                ..tier_on_sale(fresh_id(), 100)
            })
            .collect(),
    }
}

fn tier_of(stock: &SessionStock, index: usize) -> TierRef {
    TierRef {
        session_id: stock.session_id,
        tier_id: stock.tiers[index].tier_id,
    }
}

fn tier_ids(stock: &SessionStock) -> Vec<i64> {
    stock.tiers.iter().map(|t| t.tier_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_s_limit_counts_every_tier_of_the_session_and_a_tier_may_cap_it_lower() {
    // A limit of 4 per buyer; tiers A and B without a cap of their own, C capped at 1.
    let stock = session_of(4, &[0, 0, 1]);
    let (a, b, c) = (tier_of(&stock, 0), tier_of(&stock, 1), tier_of(&stock, 2));
    let gate = gate_with(&stock).await;

    // One buyer's orders of one ticket, at once, over A and B: 4 granted in all.
    let orders: Vec<_> = (0..40)
        .map(|i| {
            let gate = gate.clone();
            let tier = if i % 2 == 0 { a } else { b };
            tokio::spawn(async move {
                gate.prededuct(tier, &format!("ORD-G{i}"), "greedy", 1)
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
    assert_eq!(
        gate.held_in_session(stock.session_id, "greedy")
            .await
            .expect("held"),
        4
    );
    let (in_a, in_b) = (counters(&gate, a).await, counters(&gate, b).await);
    assert_eq!(in_a.deducted + in_b.deducted, 4);
    assert_eq!(
        gate.prededuct(c, "ORD-G-C", "greedy", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::LimitReached,
        "the session's limit holds in every tier"
    );

    // The tier's cap: one ticket of C, then no more there, while A still sells up to 4 in all.
    let outcome = |tier, order: &'static str, quantity| {
        let gate = gate.clone();
        async move {
            gate.prededuct(tier, order, "fan", quantity)
                .await
                .expect("call")
                .outcome
        }
    };
    assert_eq!(outcome(c, "ORD-F1", 1).await, PredeductOutcome::Deducted);
    assert_eq!(
        outcome(c, "ORD-F2", 1).await,
        PredeductOutcome::LimitReached
    );
    assert_eq!(outcome(a, "ORD-F3", 3).await, PredeductOutcome::Deducted);
    assert_eq!(
        outcome(b, "ORD-F4", 1).await,
        PredeductOutcome::LimitReached
    );

    // A rollback gives the tickets back to the tier and to the buyer's count in the session.
    let back = gate.rollback(a, "ORD-F3").await.expect("rollback");
    assert_eq!((back.outcome, back.quantity), (FenceOutcome::RolledBack, 3));
    assert_eq!(
        gate.held_in_session(stock.session_id, "fan")
            .await
            .expect("held"),
        1
    );
    assert_eq!(outcome(b, "ORD-F5", 3).await, PredeductOutcome::Deducted);
    // A confirm keeps them counted.
    gate.confirm(b, "ORD-F5").await.expect("confirm");
    assert_eq!(
        outcome(a, "ORD-F6", 1).await,
        PredeductOutcome::LimitReached
    );

    for tier in [a, b, c] {
        assert_invariant(&counters(&gate, tier).await);
    }
    clean_up(&gate, stock.session_id, &tier_ids(&stock)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_loaded_beside_the_session_s_other_tiers_counts_each_holding_once() {
    let mut stock = session_of(4, &[0, 0]);
    stock.tiers[0].fences = Some(vec![fence("ORD-A", FenceState::Deducted, 2, "u1")]);
    stock.tiers[1].fences = Some(vec![fence("ORD-B", FenceState::Confirmed, 1, "u1")]);
    let (a, b) = (tier_of(&stock, 0), tier_of(&stock, 1));
    let gate = gate_with(&stock).await;
    let session_id = stock.session_id;
    let held = || {
        let gate = gate.clone();
        async move { gate.held_in_session(session_id, "u1").await.expect("held") }
    };
    assert_eq!(held().await, 3);

    // Redis loses tier A alone; it is loaded again beside B, which Redis kept (its fences
    // not read): u1's 2 tickets of A are counted once, not added to what the session held.
    gate.forget(a).await.expect("lose A");
    let mut again = stock.clone();
    again.tiers[1].fences = None;
    assert_eq!(
        gate.load(&again, "stamp").await.expect("load"),
        SessionLoad::Loaded(vec![a.tier_id])
    );
    assert_eq!(held().await, 3);
    assert_eq!(
        gate.prededuct(b, "ORD-B2", "u1", 2)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::LimitReached
    );
    assert_eq!(
        gate.prededuct(b, "ORD-B3", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::Deducted
    );
    assert_eq!(held().await, 4);

    // Redis loses the whole session: a load that lacks B's fences writes nothing and says so.
    clean_up(&gate, stock.session_id, &tier_ids(&stock)).await;
    assert_eq!(
        gate.load(&again, "stamp").await.expect("load"),
        SessionLoad::Missing(vec![b.tier_id])
    );
    assert!(gate.counters(a).await.expect("counters").is_none());
    again.tiers[1].fences = Some(vec![
        fence("ORD-B", FenceState::Confirmed, 1, "u1"),
        fence("ORD-B3", FenceState::Deducted, 1, "u1"),
    ]);
    assert_eq!(
        gate.load(&again, "stamp").await.expect("load"),
        SessionLoad::Loaded(tier_ids(&stock))
    );
    assert_eq!(held().await, 4);

    // Redis loses the session's own keys alone: the scripts refuse until the session is
    // loaded, which counts the holdings afresh from its tiers.
    let session_keys = [
        ticket_platform::stock_keys::session_meta(KEY_PREFIX, stock.session_id),
        ticket_platform::stock_keys::session_users(KEY_PREFIX, stock.session_id),
    ];
    let _: i64 = fred::prelude::KeysInterface::del(gate.pool().next(), session_keys.to_vec())
        .await
        .expect("lose the session's keys");
    assert!(matches!(
        gate.prededuct(a, "ORD-A2", "u1", 1).await,
        Err(stock_svc::gate::GateError::NotLoaded(_))
    ));
    stock.tiers.iter_mut().for_each(|t| t.fences = None);
    assert_eq!(
        gate.load(&stock, "stamp").await.expect("load"),
        SessionLoad::Loaded(Vec::new())
    );
    assert_eq!(held().await, 4);
    assert_eq!(
        gate.prededuct(a, "ORD-A2", "u1", 1)
            .await
            .expect("call")
            .outcome,
        PredeductOutcome::LimitReached
    );
    for tier in [a, b] {
        assert_invariant(&counters(&gate, tier).await);
    }
    clean_up(&gate, stock.session_id, &tier_ids(&stock)).await;
}
