//! The orchestrator's durable timers shared by replicas: several hundred timers due at once,
//! claimed and fired by two engines on one saga log, each fired exactly once; a step timeout
//! marked fired by its reply and an ended saga's timers by its end. Postgres only:
//! the commands the timers send stay in the outbox.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use e2e::saga_log;
use orchestrator::saga::definition::RetryPolicy;
use orchestrator::saga::engine::Engine;
use orchestrator::saga::machine::Signal;
use orchestrator::saga::purchase::{Purchase, SagaSettings};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};
use ticket_proto::saga::v1::Reply;
use tokio_util::sync::CancellationToken;

const SAGAS: usize = 300;

/// Sagas whose steps time out after `step_timeout`, with `max_attempts` each a millisecond
/// apart, and whose payment window is `payment_window`.
fn settings(step_timeout: Duration, max_attempts: u32, payment_window: Duration) -> SagaSettings {
    SagaSettings {
        step_timeout,
        retry: RetryPolicy {
            max_attempts,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        },
        payment_window,
        expiry_margin: Duration::ZERO,
    }
}

/// `count` purchases, one ticket each, started on `engine`.
async fn start_sagas(engine: &Engine<Purchase>, count: usize) {
    for i in 0..count {
        let (order_no, data) = saga_log::order("T", i);
        engine.start(&order_no, data).await.expect("start");
    }
}

/// Claims and fires timers until none is left due; returns the ids this replica fired.
async fn fire_until_quiet(engine: Engine<Purchase>) -> Vec<i64> {
    let mut fired = Vec::new();
    let mut quiet = 0;
    while quiet < 20 {
        // No lease: the other replica may claim the same timers at once, and only the
        // transaction that marks a timer fired acts on it.
        let claimed = engine
            .claim_timers(32, Duration::ZERO)
            .await
            .expect("claim");
        if claimed.is_empty() {
            quiet += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        quiet = 0;
        let firing = claimed.iter().map(|timer| {
            let engine = engine.clone();
            async move { (timer.id, engine.fire(timer).await.expect("fire")) }
        });
        for (id, first) in futures::future::join_all(firing).await {
            if first {
                fired.push(id);
            }
        }
    }
    fired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_several_hundred_due_timers_each_exactly_once() {
    let (config, db) = saga_log::fresh("t_orch_").await;
    // Every step times out at once and has two attempts: each saga runs through six timers
    // (deduct: timeout, retry, timeout; then its compensation's cancel: the same) and parks.
    let settings = settings(Duration::from_millis(1), 2, Duration::from_secs(60));
    let first = saga_log::engine(&db, &settings);
    start_sagas(&first, SAGAS).await;
    let second = saga_log::engine(&db, &settings);
    assert_ne!(first.replica(), second.replica());
    let (a, b) = tokio::join!(
        tokio::spawn(fire_until_quiet(first.clone())),
        tokio::spawn(fire_until_quiet(second.clone()))
    );
    let (a, b) = (a.expect("replica a"), b.expect("replica b"));
    println!("replica a fired {}, replica b {}", a.len(), b.len());

    let a_set: HashSet<i64> = a.iter().copied().collect();
    let b_set: HashSet<i64> = b.iter().copied().collect();
    assert_eq!(a_set.len(), a.len(), "replica a fired a timer twice");
    assert_eq!(b_set.len(), b.len(), "replica b fired a timer twice");
    assert!(a_set.is_disjoint(&b_set), "a timer fired on both replicas");
    assert!(!a.is_empty() && !b.is_empty(), "both replicas took part");
    let timers = saga_log::number(&db, "SELECT count(*) AS n FROM saga_timer").await;
    assert_eq!(timers, i64::try_from(SAGAS * 6).expect("count"));
    assert_eq!(
        i64::try_from(a.len() + b.len()).expect("count"),
        timers,
        "every timer fired"
    );
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga_timer WHERE fired_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        saga_log::number(&db, "SELECT count(DISTINCT fired_by) AS n FROM saga_timer").await,
        2
    );

    // Each saga acted once per timer: two attempts of each command, one outbox row each, and
    // parked at its compensation.
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga WHERE state = 'PARKED' AND step = 'ORDER_CANCEL'"
        )
        .await,
        i64::try_from(SAGAS).expect("count")
    );
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT message_key, tag, count(*) AS n FROM outbox GROUP BY message_key, tag",
        ))
        .await
        .expect("outbox");
    let mut sent: HashMap<String, i64> = HashMap::new();
    for row in rows {
        let tag: String = row.try_get("", "tag").expect("tag");
        let n: i64 = row.try_get("", "n").expect("n");
        assert_eq!(n, 2, "two attempts of {tag}");
        *sent.entry(tag).or_default() += n;
    }
    let per_tag = i64::try_from(SAGAS * 2).expect("count");
    assert_eq!(sent.get("STOCK_DEDUCT"), Some(&per_tag));
    assert_eq!(sent.get("ORDER_CANCEL"), Some(&per_tag));
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_timer_is_left_to_its_replica_until_the_lease_runs_out_then_fired_by_another() {
    let (config, db) = saga_log::fresh("t_orch_").await;
    let settings = SagaSettings {
        step_timeout: Duration::from_millis(1),
        ..SagaSettings::default()
    };
    let crashed = saga_log::engine(&db, &settings);
    start_sagas(&crashed, 20).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A replica claims every due timer for two seconds, then dies before firing any.
    let claimed = crashed
        .claim_timers(100, Duration::from_secs(2))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 20);
    let survivor = saga_log::engine(&db, &settings);
    let meanwhile = survivor
        .claim_timers(100, Duration::from_secs(30))
        .await
        .expect("claim");
    assert!(
        meanwhile.is_empty(),
        "claimed under another's lease: {meanwhile:?}"
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let after = survivor
        .claim_timers(100, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(after.len(), 20, "the lease ran out");
    for timer in &after {
        assert!(survivor.fire(timer).await.expect("fire"));
    }
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga_timer WHERE kind = 'STEP_TIMEOUT' AND fired_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(DISTINCT fired_by) AS n FROM saga_timer WHERE fired_at IS NOT NULL"
        )
        .await,
        1
    );
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}

/// A saga that ended (paid and finished, or cancelled and undone) leaves timers that can do
/// nothing, its payment deadline among them: its end marks them fired, so none fires later as
/// a no-op in a transaction of its own. Once the deadlines are past, the poll finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_that_ends_marks_its_timers_fired() {
    const COUNT: usize = 40;
    let (config, db) = saga_log::fresh("t_orch_").await;
    let settings = settings(Duration::from_secs(60), 3, Duration::from_millis(300));
    let engine = saga_log::engine(&db, &settings);
    start_sagas(&engine, COUNT).await;
    let ids = saga_ids(&db, "SELECT saga_id FROM saga").await;
    for replies in [
        ids.iter()
            .map(|id| saga_log::deducted(id, 1))
            .collect::<Vec<_>>(),
        ids.iter().map(|id| saga_log::reserved(id)).collect(),
    ] {
        for result in engine.on_replies(&replies).await.expect("replies") {
            result.expect("the saga moved on");
        }
    }
    // Half the buyers pay, half cancel; then every step the sagas take is answered.
    let signals: Vec<(String, Signal)> = (0..COUNT)
        .map(|i| {
            let signal = if i % 2 == 0 {
                Signal::PivotPassed
            } else {
                Signal::Abort
            };
            (saga_log::order("T", i).0, signal)
        })
        .collect();
    for result in engine.signal_many(&signals).await.expect("signals") {
        result.expect("the saga heard it");
    }
    loop {
        let rows = db
            .query_all_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT saga_id, step, attempt FROM saga WHERE state IN ('RUNNING', 'COMPENSATING')",
            ))
            .await
            .expect("sagas under way");
        if rows.is_empty() {
            break;
        }
        let replies: Vec<Reply> = rows
            .iter()
            .map(|row| {
                let saga_id: String = row.try_get("", "saga_id").expect("saga_id");
                let step: String = row.try_get("", "step").expect("step");
                let attempt: i32 = row.try_get("", "attempt").expect("attempt");
                saga_log::answered(&saga_id, &step, u32::try_from(attempt).expect("attempt"))
            })
            .collect();
        for result in engine.on_replies(&replies).await.expect("replies") {
            result.expect("the saga moved on");
        }
    }
    let ended = "SELECT count(*) AS n FROM saga WHERE state = 'COMPLETED' \
                 UNION ALL SELECT count(*) FROM saga WHERE state = 'COMPENSATED'";
    let count = i64::try_from(COUNT).expect("count");
    let states = || async {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), ended))
            .await
            .expect("states")
            .iter()
            .map(|row| row.try_get::<i64>("", "n").expect("n"))
            .collect::<Vec<_>>()
    };
    assert_eq!(states().await, vec![count / 2, count / 2]);
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga_timer WHERE kind = 'DEADLINE' AND fired_at IS NOT NULL"
        )
        .await,
        count,
        "every saga's deadline is marked fired"
    );
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga_timer WHERE fired_at IS NULL"
        )
        .await,
        0,
        "an ended saga leaves no timer to fire"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        engine
            .claim_timers(32, Duration::ZERO)
            .await
            .expect("claim")
            .is_empty(),
        "nothing is due once the deadlines are past"
    );
    assert_eq!(
        states().await,
        vec![count / 2, count / 2],
        "no saga changed"
    );
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}

async fn saga_ids(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("sagas")
        .iter()
        .map(|row| row.try_get("", "saga_id").expect("saga_id"))
        .collect()
}

async fn fired(db: &DatabaseConnection, step: &str) -> i64 {
    saga_log::number(
        db,
        &format!(
            "SELECT count(*) AS n FROM saga_timer \
             WHERE kind = 'STEP_TIMEOUT' AND step = '{step}' AND fired_at IS NOT NULL"
        ),
    )
    .await
}

/// A step timeout whose attempt was answered has nothing to act on: the reply marks it fired
/// in the statement that records the reply, long before it falls due. Here every saga is then
/// held by another transaction while the poll runs: the unanswered timeouts wait for their
/// sagas and act once they are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_marks_its_timeout_fired_and_unanswered_timeouts_still_act() {
    const COUNT: usize = 40;
    let (config, db) = saga_log::fresh("t_orch_").await;
    let settings = settings(Duration::from_millis(300), 3, Duration::from_secs(60));
    let engine = saga_log::engine(&db, &settings);
    start_sagas(&engine, COUNT).await;
    // Each saga's deduct is answered; the reservation that follows is not.
    let sagas = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT saga_id FROM saga",
        ))
        .await
        .expect("sagas");
    let replies: Vec<Reply> = sagas
        .iter()
        .map(|row| saga_log::deducted(&row.try_get::<String>("", "saga_id").expect("saga_id"), 1))
        .collect();
    for result in engine.on_replies(&replies).await.expect("replies") {
        result.expect("the saga moved on");
    }
    let count = i64::try_from(COUNT).expect("count");
    assert_eq!(
        fired(&db, "STOCK_DEDUCT").await,
        count,
        "each answered timeout is marked fired with its reply, before it falls due"
    );

    let holder = db.begin().await.expect("begin");
    holder
        .execute_unprepared("SELECT saga_id FROM saga FOR UPDATE")
        .await
        .expect("hold every saga");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stop = CancellationToken::new();
    let poller =
        orchestrator::timers::spawn(engine.clone(), Duration::from_millis(50), stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fired(&db, "ORDER_RESERVE").await,
        0,
        "an unanswered timeout waits for its saga"
    );

    holder.rollback().await.expect("release the sagas");
    e2e::eventually(
        Duration::from_secs(30),
        "the unanswered timeouts acted",
        || {
            let db = db.clone();
            async move {
                let retries = saga_log::number(
                    &db,
                    "SELECT count(*) AS n FROM saga_timer \
                 WHERE kind = 'RETRY' AND step = 'ORDER_RESERVE' AND attempt = 2",
                )
                .await;
                (fired(&db, "ORDER_RESERVE").await >= count && retries == count).then_some(())
            }
        },
    )
    .await;
    stop.cancel();
    poller.await.expect("the poller stopped");
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}

/// Timers a previous version left open that can do nothing are marked fired by the upgrade,
/// so they do not fire one transaction each after it: an answered attempt's timeout and an
/// ended saga's deadline. A timeout still waiting for its reply stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_marks_fired_what_an_older_version_left_open_for_nothing() {
    use orchestrator::migration::Migrator;
    use sea_orm_migration::MigratorTrait;

    // The schema as it was before the migration that marks them.
    let (config, db) = saga_log::before("m20261127_000303_open_timers_by_saga").await;
    db.execute_unprepared(
        "INSERT INTO saga (saga_id, order_no, saga_type, state, step, attempt, data) VALUES
           ('s-done', 'T1', 'purchase', 'COMPLETED', 'NOTIFY_PUSH', 1, '{}'),
           ('s-running', 'T2', 'purchase', 'RUNNING', 'ORDER_RESERVE', 1, '{}');
         INSERT INTO saga_step (saga_id, step, attempt, command, transport, replied_at) VALUES
           ('s-running', 'STOCK_DEDUCT', 1, 'deduct', 'rocketmq', now()),
           ('s-running', 'ORDER_RESERVE', 1, 'reserve', 'rocketmq', NULL);
         INSERT INTO saga_timer (saga_id, kind, step, attempt, due_at) VALUES
           ('s-done', 'DEADLINE', 'AWAIT_PAYMENT', 1, now() + interval '1 minute'),
           ('s-running', 'STEP_TIMEOUT', 'STOCK_DEDUCT', 1, now() - interval '1 minute'),
           ('s-running', 'STEP_TIMEOUT', 'ORDER_RESERVE', 1, now() + interval '1 minute');",
    )
    .await
    .expect("what the older version left");
    Migrator::up(&db, None).await.expect("the upgrade");
    let open = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT saga_id, step FROM saga_timer WHERE fired_at IS NULL",
        ))
        .await
        .expect("open timers")
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "saga_id").expect("saga_id"),
                row.try_get::<String>("", "step").expect("step"),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        open,
        vec![("s-running".to_owned(), "ORDER_RESERVE".to_owned())]
    );
    assert_eq!(
        saga_log::number(
            &db,
            "SELECT count(*) AS n FROM saga_timer WHERE fired_by = 'migration'"
        )
        .await,
        2
    );
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}
