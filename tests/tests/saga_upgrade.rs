//! Sagas an older version left at a step the upgrade retires: a purchase told its buyer in a
//! step per channel (`NOTIFY_SMS`, `_EMAIL`, `_PUSH`), now in one, `NOTIFY`. Postgres only: the
//! commands the engine decides stay in the outbox.

use std::time::Duration;

use e2e::saga_log;
use orchestrator::migration::Migrator;
use orchestrator::saga::definition::RetryPolicy;
use orchestrator::saga::engine::{Engine, OperatorAction};
use orchestrator::saga::purchase::{Purchase, SagaSettings};
use prost::Message;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;
use ticket_proto::saga::v1::Command;
use ticket_proto::saga::v1::command::Body;

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<(String, String)> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "a").expect("a"),
                row.try_get::<String>("", "b").expect("b"),
            )
        })
        .collect()
}

/// The channels of the `NOTIFY` command sent to `saga_id` at `attempt`, from the outbox.
async fn notified(db: &DatabaseConnection, saga_id: &str, attempt: i32) -> Option<Vec<String>> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT tag, payload FROM outbox WHERE saga_id = $1 AND step = 'NOTIFY' AND attempt = $2",
            [saga_id.into(), attempt.into()],
        ))
        .await
        .expect("outbox")?;
    assert_eq!(row.try_get::<String>("", "tag").expect("tag"), "NOTIFY");
    let payload: Vec<u8> = row.try_get("", "payload").expect("payload");
    match Command::decode(payload.as_slice()).expect("a command").body {
        Some(Body::Notify(notify)) if notify.channel.is_empty() => Some(notify.channels),
        other => panic!("not a NOTIFY: {other:?}"),
    }
}

/// Fires due timers until the saga's `NOTIFY` attempt `attempt` is in the outbox.
async fn fire_until_notified(
    engine: &Engine<Purchase>,
    db: &DatabaseConnection,
    saga_id: &str,
    attempt: i32,
) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        if let Some(channels) = notified(db, saga_id, attempt).await {
            return channels;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no NOTIFY attempt {attempt} of {saga_id}"
        );
        for timer in engine
            .claim_timers(32, Duration::ZERO)
            .await
            .expect("claim")
        {
            engine.fire(&timer).await.expect("fire");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A saga waiting for the reply of a retired step is moved to `NOTIFY` with its open timer:
/// the timeout then sends `NOTIFY` naming every channel (notify-svc queues only those not yet
/// queued), a late reply of the retired step changes nothing, and `NOTIFY`'s reply completes
/// the purchase. One parked at a retired step is moved too, so an operator's retry sends
/// `NOTIFY`; one completed there keeps its history and stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_left_at_a_retired_notification_step_tell_their_buyer_after_the_upgrade() {
    let (config, db) = saga_log::before("m20261128_000306_one_notify_step").await;
    let data = r#"{"user_id":"u","tier_id":1,"quantity":1,"unit_price_cents":100,"reserved":true}"#;
    db.execute_unprepared(&format!(
        "INSERT INTO saga (saga_id, order_no, saga_type, state, step, attempt, data, passed_pivot, incident) VALUES
           ('s-telling', 'T1', 'PURCHASE', 'RUNNING', 'NOTIFY_EMAIL', 1, '{data}', true, NULL),
           ('s-parked', 'T2', 'PURCHASE', 'PARKED', 'NOTIFY_PUSH', 5, '{data}', true,
            'NOTIFY_PUSH did not succeed in 5 attempts'),
           ('s-done', 'T3', 'PURCHASE', 'COMPLETED', 'NOTIFY_PUSH', 1, '{data}', true, NULL);
         INSERT INTO saga_step (saga_id, step, attempt, command, transport, replied_at, outcome) VALUES
           ('s-telling', 'NOTIFY_SMS', 1, 'sms', 'rocketmq', now(), 'OK'),
           ('s-telling', 'NOTIFY_EMAIL', 1, 'email', 'rocketmq', NULL, NULL),
           ('s-done', 'NOTIFY_PUSH', 1, 'push', 'rocketmq', now(), 'OK');
         INSERT INTO saga_timer (saga_id, kind, step, attempt, due_at) VALUES
           ('s-telling', 'STEP_TIMEOUT', 'NOTIFY_SMS', 1, now() - interval '2 minutes'),
           ('s-telling', 'STEP_TIMEOUT', 'NOTIFY_EMAIL', 1, now() - interval '1 minute');
         UPDATE saga_timer SET fired_at = now() WHERE step = 'NOTIFY_SMS';"
    ))
    .await
    .expect("what the older version left");
    Migrator::up(&db, None).await.expect("the upgrade");

    assert_eq!(
        rows(
            &db,
            "SELECT saga_id AS a, step AS b FROM saga ORDER BY saga_id"
        )
        .await,
        [
            ("s-done".to_owned(), "NOTIFY_PUSH".to_owned()),
            ("s-parked".to_owned(), "NOTIFY".to_owned()),
            ("s-telling".to_owned(), "NOTIFY".to_owned()),
        ]
    );
    assert_eq!(
        rows(
            &db,
            "SELECT saga_id AS a, step AS b FROM saga_timer WHERE fired_at IS NULL"
        )
        .await,
        [("s-telling".to_owned(), "NOTIFY".to_owned())]
    );

    let settings = SagaSettings {
        step_timeout: Duration::from_secs(600),
        retry: RetryPolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        },
        payment_window: Duration::from_secs(600),
        expiry_margin: Duration::ZERO,
    };
    let engine = saga_log::engine(&db, &settings);
    let every = ["SMS", "EMAIL", "PUSH"].map(str::to_owned);
    assert_eq!(
        fire_until_notified(&engine, &db, "s-telling", 2).await,
        every
    );

    // The retired step's reply, late: the saga is no longer at it.
    engine
        .on_reply(&saga_log::answered("s-telling", "NOTIFY_EMAIL", 1))
        .await
        .expect("a late reply");
    let state = |id: &'static str| {
        let db = db.clone();
        async move {
            rows(
                &db,
                &format!("SELECT state AS a, step AS b FROM saga WHERE saga_id = '{id}'"),
            )
            .await
        }
    };
    assert_eq!(
        state("s-telling").await,
        [("RUNNING".to_owned(), "NOTIFY".to_owned())]
    );
    engine
        .on_reply(&saga_log::answered("s-telling", "NOTIFY", 2))
        .await
        .expect("the reply");
    assert_eq!(
        state("s-telling").await,
        [("COMPLETED".to_owned(), "NOTIFY".to_owned())]
    );

    engine
        .operate("s-parked", OperatorAction::Retry, "the upgrade")
        .await
        .expect("the retry")
        .expect("a parked saga may be retried");
    assert_eq!(
        fire_until_notified(&engine, &db, "s-parked", 6).await,
        every
    );

    // The completed one is read as it was: an operator's retry is refused, not an error.
    assert!(
        engine
            .operate("s-done", OperatorAction::Retry, "nothing to do")
            .await
            .expect("a readable saga")
            .is_err()
    );
    ticket_platform::db::drop_database(&config.url)
        .await
        .expect("drop");
}
