//! A command in flight while Redis goes back in time: its script ran on the Redis before the
//! restart, its ledger row is not committed yet when the restarted Redis is checked against the
//! ledger. Neither order of the two may sell a ticket twice: a check waits for the record that
//! is on its way, and a record whose script ran before a check is refused, to run again. And a
//! check whose stamp reached Redis but not Postgres is made again by the next change.

use std::time::Duration;

use e2e::redis::PrivateRedis;
use e2e::stock::{StockApp, admin};
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use stock_svc::commands::StockCommands;
use stock_svc::gate::{Fence, FenceState, PredeductOutcome, TierRef};
use stock_svc::ledger::{self, LedgerEntry};
use stock_svc::stock::{Stock, StockRequest, StockStep};
use ticket_platform::participant::{Batched, CommandHandler};
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::{Command, ReplyOutcome, StockDeduct};
use ticket_proto::stock::v1 as pb;

const TOTAL: i64 = 3;

/// A prededuct of one ticket over gRPC, repeated while Redis reconnects.
async fn prededuct(app: &StockApp, order: &str, tier: i64, user: &str) -> pb::PredeductOutcome {
    for _ in 0..100 {
        match app
            .stock()
            .prededuct(admin(pb::PredeductRequest {
                order_no: order.into(),
                tier_id: tier,
                user_id: user.into(),
                quantity: 1,
            }))
            .await
        {
            Ok(answer) => return answer.into_inner().outcome(),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{order}: {status:?}"),
        }
    }
    panic!("{order}: Redis never came back");
}

/// Waits until a connection of the app's database waits for a lock (a check waiting for a
/// record's transaction); fails after five seconds.
async fn wait_for_a_lock(app: &StockApp) {
    for _ in 0..100 {
        let waiting: i64 = app
            .db
            .query_one_raw(Statement::from_string(
                app.db.get_database_backend(),
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            ))
            .await
            .expect("pg_stat_activity")
            .expect("a row")
            .try_get("", "n")
            .expect("n");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing waited for a lock");
}

/// Sells one ticket to each new buyer until the tier answers sold out; the orders sold.
async fn sell_out(app: &StockApp, tier: i64) -> usize {
    let mut sold = 0;
    for n in 0..20 {
        match prededuct(app, &format!("S{n}"), tier, &format!("s{n}")).await {
            pb::PredeductOutcome::Deducted => sold += 1,
            pb::PredeductOutcome::SoldOut => return sold,
            other => panic!("S{n}: {other:?}"),
        }
    }
    panic!("tier {tier} never sold out");
}

struct Sale {
    redis: PrivateRedis,
    app: StockApp,
    tier: TierRef,
}

/// A tier of `TOTAL` tickets on a private Redis, snapshotted while nothing is sold.
async fn sale() -> Sale {
    let redis = PrivateRedis::start();
    let app = StockApp::start_on(&redis.url()).await;
    let session = app.session(2).await;
    let tier = app.tier_in(session.session_id, "Floor", TOTAL, 0).await;
    redis.snapshot("empty.rdb");
    let tier = TierRef {
        session_id: session.session_id,
        tier_id: tier.tier_id,
    };
    Sale { redis, app, tier }
}

impl Sale {
    /// Command A's script, on the Redis of now: one ticket deducted for order A.
    async fn script_of_a(&self) -> LedgerEntry {
        let answer = self
            .app
            .gate()
            .await
            .prededuct(self.tier, "A", "uA", 1)
            .await
            .expect("A's script");
        assert_eq!(answer.outcome, PredeductOutcome::Deducted);
        LedgerEntry {
            tier_id: self.tier.tier_id,
            fence: Fence {
                order_no: "A".into(),
                state: FenceState::Deducted,
                quantity: 1,
                user_id: "uA".into(),
            },
            stamp: answer.stamp,
        }
    }

    /// Redis killed and started from the snapshot taken before anything was sold.
    fn back_in_time(&mut self) {
        let before = self.redis.run_id();
        self.redis.kill();
        self.redis.restore("empty.rdb");
        self.redis.up();
        assert_ne!(self.redis.run_id(), before, "a new Redis process");
    }

    /// Whatever happened, exactly `TOTAL` tickets are held and Redis agrees with the ledger.
    async fn never_sold_twice(self) {
        let (app, tier) = (&self.app, self.tier.tier_id);
        sell_out(app, tier).await;
        assert_eq!(
            app.ledger_held(tier).await,
            TOTAL,
            "tickets held by the ledger"
        );
        let report = app.reconcile(tier).await;
        assert!(!report.drift, "{}", report.report);
        self.app.halt().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_check_after_a_restart_waits_for_the_record_on_its_way() {
    let mut sale = sale().await;
    let entry = sale.script_of_a().await;
    // A's transaction writes its record and has not committed when Redis goes back in time.
    let txn = sale.app.db.begin().await.expect("begin");
    let stale = ledger::record(&txn, std::slice::from_ref(&entry))
        .await
        .expect("A's record");
    assert!(stale.is_empty(), "A's script ran on the tier's last check");
    sale.back_in_time();

    // B is the first call on the restarted Redis: it checks the session against the ledger.
    let (b, ()) = tokio::join!(prededuct(&sale.app, "B", sale.tier.tier_id, "uB"), async {
        wait_for_a_lock(&sale.app).await;
        txn.commit().await.expect("A commits");
    });
    assert_eq!(
        b,
        pb::PredeductOutcome::Deducted,
        "two of three tickets held"
    );
    sale.never_sold_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_whose_script_ran_before_a_check_is_refused() {
    let mut sale = sale().await;
    let entry = sale.script_of_a().await;
    sale.back_in_time();
    // B checks the restarted Redis against the ledger, which has no record of A yet.
    assert_eq!(
        prededuct(&sale.app, "B", sale.tier.tier_id, "uB").await,
        pb::PredeductOutcome::Deducted
    );
    // A's record arrives after the check: refused, so A runs its script again.
    let txn = sale.app.db.begin().await.expect("begin");
    let stale = ledger::record(&txn, std::slice::from_ref(&entry))
        .await
        .expect("A's record");
    assert_eq!(stale, vec!["A".to_owned()], "A's record is refused");
    txn.commit().await.expect("commit");
    // A runs again, over gRPC: the restarted Redis holds no ticket of A, so it takes one now.
    assert_eq!(
        prededuct(&sale.app, "A", sale.tier.tier_id, "uA").await,
        pb::PredeductOutcome::Deducted
    );
    sale.never_sold_twice().await;
}

/// The tier's stamp in Postgres replaced, as when a check's commit was lost after it stamped
/// Redis: every record of the tier now names a stamp Postgres does not have.
async fn lose_the_stamp(app: &StockApp, tier: i64) {
    app.db
        .execute_raw(Statement::from_sql_and_values(
            app.db.get_database_backend(),
            "UPDATE tier SET live_stamp = 'lost' WHERE id = $1",
            [tier.into()],
        ))
        .await
        .expect("stamp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stamp_postgres_missed_is_checked_again_by_the_next_change() {
    let sale = sale().await;
    let tier = sale.tier.tier_id;
    assert_eq!(
        prededuct(&sale.app, "A", tier, "uA").await,
        pb::PredeductOutcome::Deducted
    );
    lose_the_stamp(&sale.app, tier).await;
    // Over the gRPC door: refused once, then the session is checked again and B recorded.
    assert_eq!(
        prededuct(&sale.app, "B", tier, "uB").await,
        pb::PredeductOutcome::Deducted
    );
    assert_eq!(sale.app.ledger_held(tier).await, 2);

    // Over Participant.Execute, the orchestrator's synchronous path: the command's own
    // transaction refuses, the reply says to retry, and the retry goes through.
    lose_the_stamp(&sale.app, tier).await;
    let command = Command {
        saga_id: "saga-C".into(),
        order_no: "C".into(),
        step: "STOCK_DEDUCT".into(),
        attempt: 1,
        body: Some(Body::StockDeduct(StockDeduct {
            tier_id: tier,
            user_id: "uC".into(),
            quantity: 1,
        })),
    };
    let mut participant = sale.app.participant();
    let first = participant
        .execute(e2e::auth::service(command.clone()))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(
        (first.outcome(), first.reason.as_str()),
        (ReplyOutcome::Failed, "UNAVAILABLE"),
        "{first:?}"
    );
    assert_eq!(sale.app.ledger_held(tier).await, 2, "nothing recorded");
    let again = participant
        .execute(e2e::auth::service(command))
        .await
        .expect("execute again")
        .into_inner();
    assert_eq!(again.outcome(), ReplyOutcome::Ok, "{again:?}");
    assert_eq!(sale.app.ledger_held(tier).await, 3);
    sale.never_sold_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_record_waiting_for_a_check_takes_the_stamp_the_check_commits() {
    let sale = sale().await;
    let (app, tier) = (&sale.app, sale.tier);
    // A check between its two writes: the tier locked in Postgres with its new stamp not yet
    // committed, Redis already giving that stamp.
    let check = app.db.begin().await.expect("begin");
    check
        .execute_raw(Statement::from_sql_and_values(
            check.get_database_backend(),
            "UPDATE tier SET live_stamp = 'next' WHERE id = $1",
            [tier.tier_id.into()],
        ))
        .await
        .expect("the check's stamp");
    let meta = ticket_platform::stock_keys::meta(&app.key_prefix, tier.session_id, tier.tier_id);
    assert_eq!(
        sale.redis.cli(&["HSET", &meta, "stamp", "next"]).trim(),
        "0"
    );
    // A's script gives the new stamp; its record waits for the check, then is taken.
    let (a, ()) = tokio::join!(prededuct(app, "A", tier.tier_id, "uA"), async {
        wait_for_a_lock(app).await;
        check.commit().await.expect("the check commits");
    });
    assert_eq!(a, pb::PredeductOutcome::Deducted);
    assert_eq!(
        ledger::live_stamp(&app.db, tier.tier_id)
            .await
            .expect("stamp"),
        Some("next".to_owned()),
        "recorded at once: no second check"
    );
    sale.never_sold_twice().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_a_refused_record_fails_whole_and_its_commands_then_go_through_alone() {
    let sale = sale().await;
    let (app, tier) = (&sale.app, sale.tier.tier_id);
    let stock = Stock::new(app.db.clone(), app.db.clone(), app.gate().await, 1);
    let handler = StockCommands { stock };
    let requests: Vec<StockRequest> = ["D1", "D2"]
        .into_iter()
        .map(|order| {
            let step = StockStep::Prededuct {
                tier_id: tier,
                user_id: format!("u{order}"),
                quantity: 1,
            };
            StockRequest::new(order, step).expect("a request")
        })
        .collect();
    let batch: Vec<Batched<'_, StockRequest>> = requests
        .iter()
        .map(|checked| Batched {
            checked,
            span: tracing::Span::none(),
        })
        .collect();
    lose_the_stamp(app, tier).await;
    let txn = app.db.begin().await.expect("begin");
    let refused = handler.run_all(&batch, &txn).await;
    assert!(refused.is_err(), "{refused:?}");
    txn.rollback().await.expect("rollback");
    assert_eq!(app.ledger_held(tier).await, 0, "nothing recorded");
    // Alone, each in a transaction of its own, as the consumer runs them again.
    for request in &requests {
        let txn = app.db.begin().await.expect("begin");
        let answer = handler.run(request, &txn).await.expect("runs alone");
        assert_eq!(answer.outcome, ReplyOutcome::Ok, "{answer:?}");
        txn.commit().await.expect("commit");
    }
    assert_eq!(app.ledger_held(tier).await, 2);
    sale.never_sold_twice().await;
}
