//! stock-svc's `CatalogService` over gRPC, with real Postgres and Redis: the admin token guards
//! writes, bad input gets the right code and changes nothing, a session's per-buyer limit and a
//! tier's cap within it are kept, and a new tier's stock is live.

#![recursion_limit = "512"]

use e2e::redis_url;
use e2e::stock::{StockApp, admin};
use ticket_proto::stock::v1 as pb;
use tonic::{Code, Request};

async fn start() -> StockApp {
    StockApp::start().await
}

fn ts(seconds_from_now: i64) -> Option<prost_types::Timestamp> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    Some(prost_types::Timestamp {
        seconds: i64::try_from(now).expect("seconds") + seconds_from_now,
        nanos: 0,
    })
}

fn session_request(show_id: i64) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        show_id,
        starts_at: ts(7_200),
        sale_opens_at: ts(-60),
        sale_closes_at: ts(3_600),
        per_user_limit: 0,
    }
}

fn tier_request(session_id: i64) -> pb::CreateTierRequest {
    pb::CreateTierRequest {
        session_id,
        name: "Floor".into(),
        price_cents: 8_900,
        total: 300,
        per_user_limit: 4,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_a_show_and_its_tier_is_on_sale_at_once() {
    let running = start().await;
    let mut catalog = running.catalog();
    let c = &mut catalog;
    let show = c
        .create_show(admin(pb::CreateShowRequest {
            title: "Night Concert".into(),
            venue: "Arena".into(),
        }))
        .await
        .expect("show")
        .into_inner();
    let session = c
        .create_session(admin(session_request(show.show_id)))
        .await
        .expect("session")
        .into_inner();
    assert_eq!(
        session.per_user_limit,
        stock_svc::catalog::DEFAULT_SESSION_PER_USER_LIMIT,
        "0 takes the default limit per buyer"
    );
    let tier = c
        .create_tier(admin(tier_request(session.session_id)))
        .await
        .expect("tier")
        .into_inner();
    assert_eq!(
        (tier.total, tier.available, tier.sold, tier.price_cents),
        (300, 300, 0, 8_900)
    );
    assert_eq!(
        (tier.per_user_limit, tier.tier_limit),
        (4, 4),
        "the tier's cap is below the session's"
    );
    let uncapped = c
        .create_tier(admin(pb::CreateTierRequest {
            name: "Balcony".into(),
            per_user_limit: 0,
            ..tier_request(session.session_id)
        }))
        .await
        .expect("a tier with no cap of its own")
        .into_inner();
    assert_eq!(
        (uncapped.per_user_limit, uncapped.tier_limit),
        (session.per_user_limit, 0),
        "the session's limit applies"
    );

    let fetched = c
        .get_tier(pb::GetTierRequest {
            tier_id: tier.tier_id,
        })
        .await
        .expect("get tier")
        .into_inner();
    assert_eq!(fetched, tier);
    let whole = c
        .get_show(pb::GetShowRequest {
            show_id: show.show_id,
        })
        .await
        .expect("get show")
        .into_inner();
    assert_eq!(whole.sessions.len(), 1);
    assert_eq!(whole.sessions[0].per_user_limit, session.per_user_limit);
    assert_eq!(
        whole.sessions[0].tiers,
        vec![tier.clone(), uncapped.clone()]
    );
    // The tier's stock is live in Redis: the gate sells from it.
    let gate = stock_svc::gate::StockGate::connect(&redis_url(), 1, &running.key_prefix)
        .await
        .expect("redis");
    let sold = gate
        .prededuct((&tier).into(), "ORD-CAT-1", "u1", 2)
        .await
        .expect("prededuct");
    assert_eq!(sold.outcome, stock_svc::gate::PredeductOutcome::Deducted);
    assert_eq!(sold.unit_price_cents, 8_900);
    let after = c
        .get_tier(pb::GetTierRequest {
            tier_id: tier.tier_id,
        })
        .await
        .expect("get tier")
        .into_inner();
    assert_eq!(after.available, 298);
    running.stop(&[tier.tier_id]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_the_admin_token_are_refused_and_change_nothing() {
    let running = start().await;
    let mut catalog = running.catalog();
    let c = &mut catalog;
    let missing = c
        .create_show(pb::CreateShowRequest {
            title: "T".into(),
            venue: "V".into(),
        })
        .await;
    assert_eq!(missing.expect_err("refused").code(), Code::Unauthenticated);
    let mut wrong = Request::new(pb::CreateShowRequest {
        title: "T".into(),
        venue: "V".into(),
    });
    wrong.metadata_mut().insert(
        "authorization",
        "Bearer not-the-token".parse().expect("ascii"),
    );
    assert_eq!(
        c.create_show(wrong).await.expect_err("refused").code(),
        Code::Unauthenticated
    );
    let unauthenticated_tier = c.create_tier(tier_request(1)).await;
    assert_eq!(
        unauthenticated_tier.expect_err("refused").code(),
        Code::Unauthenticated
    );
    let shows = c
        .list_shows(pb::ListShowsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(shows.shows.is_empty(), "nothing was created: {shows:?}");
    running.stop(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let running = start().await;
    let mut catalog = running.catalog();
    let c = &mut catalog;
    let show = c
        .create_show(admin(pb::CreateShowRequest {
            title: "Play".into(),
            venue: "Theatre".into(),
        }))
        .await
        .expect("show")
        .into_inner();
    let session = c
        .create_session(admin(session_request(show.show_id)))
        .await
        .expect("session")
        .into_inner();

    let invalid = [
        c.create_show(admin(pb::CreateShowRequest {
            title: " ".into(),
            venue: "V".into(),
        }))
        .await
        .map(|_| ()),
        c.create_show(admin(pb::CreateShowRequest {
            title: "x".repeat(201),
            venue: "V".into(),
        }))
        .await
        .map(|_| ()),
        c.create_session(admin(pb::CreateSessionRequest {
            sale_opens_at: ts(100),
            sale_closes_at: ts(50),
            ..session_request(show.show_id)
        }))
        .await
        .map(|_| ()),
        c.create_session(admin(pb::CreateSessionRequest {
            per_user_limit: -1,
            ..session_request(show.show_id)
        }))
        .await
        .map(|_| ()),
        c.create_session(admin(pb::CreateSessionRequest {
            per_user_limit: 101,
            ..session_request(show.show_id)
        }))
        .await
        .map(|_| ()),
        c.create_tier(admin(pb::CreateTierRequest {
            total: 0,
            ..tier_request(session.session_id)
        }))
        .await
        .map(|_| ()),
        c.create_tier(admin(pb::CreateTierRequest {
            price_cents: -5,
            ..tier_request(session.session_id)
        }))
        .await
        .map(|_| ()),
        c.create_tier(admin(pb::CreateTierRequest {
            per_user_limit: -1,
            ..tier_request(session.session_id)
        }))
        .await
        .map(|_| ()),
        // Above the session's limit (the default, 6): a tier's cap can only be lower.
        c.create_tier(admin(pb::CreateTierRequest {
            per_user_limit: 7,
            ..tier_request(session.session_id)
        }))
        .await
        .map(|_| ()),
        c.get_tier(pb::GetTierRequest { tier_id: -1 })
            .await
            .map(|_| ()),
        c.list_shows(pb::ListShowsRequest {
            page_size: 10,
            page_token: "garbage".into(),
        })
        .await
        .map(|_| ()),
    ];
    for (i, result) in invalid.into_iter().enumerate() {
        let status = result.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "case {i}: {status:?}");
        assert!(!status.message().is_empty());
    }
    let not_found = [
        c.create_session(admin(session_request(999_999_999)))
            .await
            .map(|_| ()),
        c.create_tier(admin(tier_request(999_999_999)))
            .await
            .map(|_| ()),
        c.get_show(pb::GetShowRequest {
            show_id: 999_999_999,
        })
        .await
        .map(|_| ()),
        c.get_tier(pb::GetTierRequest {
            tier_id: 999_999_999,
        })
        .await
        .map(|_| ()),
    ];
    for (i, result) in not_found.into_iter().enumerate() {
        assert_eq!(
            result.expect_err("refused").code(),
            Code::NotFound,
            "case {i}"
        );
    }
    // A second tier of the same name in one session is refused.
    c.create_tier(admin(tier_request(session.session_id)))
        .await
        .expect("first tier");
    let twice = c.create_tier(admin(tier_request(session.session_id))).await;
    assert_eq!(twice.expect_err("refused").code(), Code::AlreadyExists);

    let whole = c
        .get_show(pb::GetShowRequest {
            show_id: show.show_id,
        })
        .await
        .expect("show")
        .into_inner();
    assert_eq!(whole.sessions.len(), 1, "only the valid session exists");
    assert_eq!(
        whole.sessions[0].tiers.len(),
        1,
        "only the valid tier exists"
    );
    let shows = c
        .list_shows(pb::ListShowsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(shows.shows.len(), 1, "only the valid show exists");
    let tiers: Vec<i64> = whole.sessions[0].tiers.iter().map(|t| t.tier_id).collect();
    running.stop(&tiers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_are_listed_page_by_page() {
    let running = start().await;
    let mut catalog = running.catalog();
    let c = &mut catalog;
    for i in 0..5 {
        c.create_show(admin(pb::CreateShowRequest {
            title: format!("Show {i}"),
            venue: "Hall".into(),
        }))
        .await
        .expect("show");
    }
    let mut titles = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_shows(pb::ListShowsRequest {
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.shows.len() <= 2);
        titles.extend(page.shows.into_iter().map(|s| s.title));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        titles,
        (0..5).map(|i| format!("Show {i}")).collect::<Vec<_>>()
    );
    running.stop(&[]).await;
}
