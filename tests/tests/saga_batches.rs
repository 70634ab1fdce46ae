//! The orchestrator's batches: many orders started, and many replies handled, in one engine
//! transaction. A batch holds what the consumers pulled together, so it can hold the same
//! message twice, a reply for a saga that does not exist, a stale attempt, or a saga the
//! engine cannot read: each saga moves once, and a bad one fails its own items alone. Two
//! replicas handling overlapping batches at once move each saga once; a reply that makes
//! every statement of its batch fail (Postgres refuses it) fails alone.
//! Postgres only: the commands the sagas decide stay in the outbox.

use std::sync::Arc;

use e2e::saga_log::{self, deducted, number, reserved};
use orchestrator::error::Error;
use orchestrator::saga::engine::Engine;
use orchestrator::saga::machine::Signal;
use orchestrator::saga::purchase::{Purchase, PurchaseData, SagaSettings};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::group_commit::GroupCommit;
use ticket_proto::saga::v1::Reply;

const SAGAS: usize = 60;

fn engine(db: &DatabaseConnection) -> Engine<Purchase> {
    saga_log::engine(db, &SagaSettings::default())
}

async fn fresh_saga_log() -> DatabaseConnection {
    saga_log::fresh("t_batch_").await.1
}

fn order(i: usize) -> (String, PurchaseData) {
    saga_log::order("B", i)
}

/// The sagas' ids by order number, in order.
async fn saga_ids(db: &DatabaseConnection) -> Vec<String> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT saga_id FROM saga ORDER BY order_no",
    ))
    .await
    .expect("sagas")
    .into_iter()
    .map(|row| row.try_get("", "saga_id").expect("saga_id"))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_moves_each_saga_once_and_a_bad_saga_fails_alone() {
    let db = fresh_saga_log().await;
    let engine = engine(&db);

    // One order started before; the batch names it again, and names another one twice.
    engine
        .start_many(vec![order(0)])
        .await
        .expect("first start")
        .into_iter()
        .for_each(|r| r.expect("started"));
    let mut orders: Vec<_> = (0..SAGAS).map(order).collect();
    orders.push(order(7));
    let results = engine.start_many(orders).await.expect("batch start");
    assert_eq!(results.len(), SAGAS + 1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        number(&db, "SELECT count(*) AS n FROM saga").await,
        SAGAS as i64
    );
    let sent = "SELECT count(*) AS n FROM outbox WHERE step = 'STOCK_DEDUCT'";
    assert_eq!(
        number(&db, sent).await,
        SAGAS as i64,
        "one command per saga"
    );
    let timers = "SELECT count(*) AS n FROM saga_timer WHERE step = 'STOCK_DEDUCT'";
    assert_eq!(
        number(&db, timers).await,
        SAGAS as i64,
        "one step timeout per saga"
    );

    // One saga's data is of a shape this version cannot read.
    let ids = saga_ids(&db).await;
    let broken = ids[3].clone();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE saga SET data = '{\"who\": 1}'::jsonb WHERE saga_id = $1",
        [broken.clone().into()],
    ))
    .await
    .expect("break a saga");

    // Every reply twice, a stale attempt, and a reply for a saga that does not exist.
    let mut replies: Vec<Reply> = ids.iter().map(|id| deducted(id, 1)).collect();
    replies.extend(ids.iter().rev().map(|id| deducted(id, 1)));
    replies.push(deducted(&ids[5], 9));
    replies.push(deducted("no-such-saga", 1));
    let results = engine.on_replies(&replies).await.expect("batch of replies");
    assert_eq!(results.len(), replies.len());
    for (reply, result) in replies.iter().zip(&results) {
        if reply.saga_id == broken {
            assert!(matches!(result, Err(Error::Corrupt(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "{}: {result:?}", reply.saga_id);
        }
    }

    let moved = "SELECT count(*) AS n FROM saga WHERE step = 'ORDER_RESERVE' AND attempt = 1 \
                 AND (data->>'unit_price_cents')::bigint = 4200";
    assert_eq!(
        number(&db, moved).await,
        SAGAS as i64 - 1,
        "every readable saga moved once"
    );
    let reserve = "SELECT count(*) AS n FROM outbox WHERE step = 'ORDER_RESERVE'";
    assert_eq!(
        number(&db, reserve).await,
        SAGAS as i64 - 1,
        "one command each"
    );
    let answered = "SELECT count(*) AS n FROM saga_step \
                    WHERE step = 'STOCK_DEDUCT' AND replied_at IS NOT NULL";
    assert_eq!(number(&db, answered).await, SAGAS as i64 - 1);
    let untouched = format!(
        "SELECT count(*) AS n FROM saga s JOIN saga_step t USING (saga_id) \
         WHERE s.saga_id = '{broken}' AND s.step = 'STOCK_DEDUCT' AND s.version = 2 \
           AND t.replied_at IS NULL"
    );
    assert_eq!(
        number(&db, &untouched).await,
        1,
        "the broken saga is as it was, its reply not recorded"
    );

    // The same batch delivered again changes nothing.
    let again = engine.on_replies(&replies).await.expect("again");
    assert_eq!(
        again.iter().filter(|r| r.is_err()).count(),
        2,
        "the broken saga's two"
    );
    assert_eq!(number(&db, reserve).await, SAGAS as i64 - 1);
    let versions = "SELECT sum(version)::bigint AS n FROM saga";
    let before = number(&db, versions).await;
    engine.on_replies(&replies).await.expect("third time");
    assert_eq!(number(&db, versions).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_with_overlapping_batches_move_each_saga_once() {
    let db = fresh_saga_log().await;
    let (first, second) = (engine(&db), engine(&db));
    first
        .start_many((0..SAGAS).map(order).collect())
        .await
        .expect("start");
    let ids = saga_ids(&db).await;
    // Each replica gets every reply, in opposite orders and cut into batches of different
    // sizes, so their transactions want the same rows at once.
    let forward: Vec<Reply> = ids.iter().map(|id| deducted(id, 1)).collect();
    let backward: Vec<Reply> = forward.iter().rev().cloned().collect();
    let run = |engine: Engine<Purchase>, replies: Vec<Reply>, size: usize| {
        tokio::spawn(async move {
            let batches = replies.chunks(size).map(|batch| {
                let (engine, batch) = (engine.clone(), batch.to_vec());
                tokio::spawn(async move { engine.on_replies(&batch).await })
            });
            for batch in batches.collect::<Vec<_>>() {
                for result in batch.await.expect("batch ran").expect("batch committed") {
                    result.expect("reply handled");
                }
            }
        })
    };
    let (a, b) = tokio::join!(run(first, forward, 7), run(second, backward, 11));
    a.expect("replica a");
    b.expect("replica b");
    let moved = "SELECT count(*) AS n FROM saga WHERE step = 'ORDER_RESERVE' AND version = 3";
    assert_eq!(
        number(&db, moved).await,
        SAGAS as i64,
        "each saga moved once"
    );
    let reserve = "SELECT count(*) AS n FROM outbox WHERE step = 'ORDER_RESERVE'";
    assert_eq!(number(&db, reserve).await, SAGAS as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_postgres_refuses_fails_alone_and_the_rest_of_its_batch_moves_on() {
    let db = fresh_saga_log().await;
    let engine = engine(&db);
    engine
        .start_many((0..SAGAS).map(order).collect())
        .await
        .expect("start");
    let ids = saga_ids(&db).await;
    // Postgres refuses a NUL byte in text: every statement of a batch holding this reply
    // fails, whatever the other replies in it.
    let mut poisoned = deducted(&ids[10], 1);
    poisoned.detail = "held\u{0}".into();
    let batches = Arc::new(GroupCommit::start(128, 1, {
        let engine = engine.clone();
        move |replies: Vec<Reply>| {
            let engine = engine.clone();
            async move { engine.on_replies(&replies).await }
        }
    }));
    let replies = ids
        .iter()
        .map(|id| {
            if *id == ids[10] {
                poisoned.clone()
            } else {
                deducted(id, 1)
            }
        })
        .map(|reply| {
            let batches = Arc::clone(&batches);
            tokio::spawn(async move { (reply.saga_id.clone(), batches.submit(reply).await) })
        })
        .collect::<Vec<_>>();
    for handled in replies {
        let (saga_id, result) = handled.await.expect("the reply ran");
        if saga_id == ids[10] {
            assert!(result.is_err(), "the poisoned reply failed");
        } else {
            assert!(result.is_ok(), "{saga_id}: {result:?}");
        }
    }
    let moved = "SELECT count(*) AS n FROM saga WHERE step = 'ORDER_RESERVE'";
    assert_eq!(number(&db, moved).await, SAGAS as i64 - 1);
    let waiting = format!(
        "SELECT count(*) AS n FROM saga WHERE saga_id = '{}' AND step = 'STOCK_DEDUCT'",
        ids[10]
    );
    assert_eq!(
        number(&db, &waiting).await,
        1,
        "the poisoned reply changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_in_one_batch_pass_each_pivot_once_and_a_bad_saga_fails_alone() {
    let db = fresh_saga_log().await;
    let engine = engine(&db);
    let orders: Vec<_> = (0..SAGAS).map(order).collect();
    let numbers: Vec<String> = orders.iter().map(|(n, _)| n.clone()).collect();
    for result in engine.start_many(orders).await.expect("start") {
        result.expect("started");
    }
    let ids = saga_ids(&db).await;
    let replies: Vec<Reply> = ids.iter().map(|id| deducted(id, 1)).collect();
    for result in engine.on_replies(&replies).await.expect("deducted") {
        result.expect("moved");
    }
    let replies: Vec<Reply> = ids.iter().map(|id| reserved(id)).collect();
    for result in engine.on_replies(&replies).await.expect("reserved") {
        result.expect("moved");
    }
    let waiting =
        "SELECT count(*) AS n FROM saga WHERE state = 'WAITING' AND step = 'AWAIT_PAYMENT'";
    assert_eq!(number(&db, waiting).await, SAGAS as i64);

    // One saga's data is of a shape this version cannot read.
    let broken = numbers[3].clone();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE saga SET data = '{\"who\": 1}'::jsonb WHERE order_no = $1",
        [broken.clone().into()],
    ))
    .await
    .expect("break a saga");

    // Every order paid twice, one buyer's cancel after the payment, an order without a saga.
    let mut signals: Vec<(String, Signal)> = numbers
        .iter()
        .map(|n| (n.clone(), Signal::PivotPassed))
        .collect();
    signals.push((numbers[5].clone(), Signal::Abort));
    signals.extend(
        numbers
            .iter()
            .rev()
            .map(|n| (n.clone(), Signal::PivotPassed)),
    );
    signals.push(("no-such-order".into(), Signal::PivotPassed));
    let results = engine
        .signal_many(&signals)
        .await
        .expect("batch of signals");
    assert_eq!(results.len(), signals.len());
    for ((order_no, _), result) in signals.iter().zip(&results) {
        if *order_no == broken {
            assert!(matches!(result, Err(Error::Corrupt(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "{order_no}: {result:?}");
        }
    }

    let confirming = "SELECT count(*) AS n FROM saga WHERE state = 'RUNNING' \
                      AND step = 'STOCK_CONFIRM' AND passed_pivot AND NOT abort_requested";
    assert_eq!(
        number(&db, confirming).await,
        SAGAS as i64 - 1,
        "every readable saga passed its pivot once; a cancel after it changes nothing"
    );
    let sent = "SELECT count(*) AS n FROM outbox WHERE step = 'STOCK_CONFIRM'";
    assert_eq!(
        number(&db, sent).await,
        SAGAS as i64 - 1,
        "one command each"
    );
    let untouched = format!(
        "SELECT count(*) AS n FROM saga WHERE order_no = '{broken}' \
         AND state = 'WAITING' AND NOT passed_pivot"
    );
    assert_eq!(
        number(&db, &untouched).await,
        1,
        "the bad saga is as it was"
    );
}
