//! Bad input to every RPC of every service: empty, negative, zero, huge and over-long fields,
//! unknown ids, enum values out of range, malformed times and page tokens, and bytes that are
//! not a protobuf message at all. Each gets the code a caller can act on and a message naming
//! what is wrong, and none changes anything: every table of every service's database and every
//! Redis key under the live stock's prefix are the same after all of them as before.
//!
//! Nothing is left out of the comparison. The snapshot is taken once the system is quiet (two
//! snapshots 3 s apart agree), and what the services write in the background by then has
//! nothing left to do: every outbox row is sent (the relays and order-svc's handover), every
//! notification is final (notify-svc's delivery), no order is PENDING (order-svc's sweep), the
//! only open timer is ann's payment deadline an hour away (the orchestrator's timers), the
//! drift check is off in the tests, and admission promises let go only when an order is
//! admitted.

#![recursion_limit = "512"]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use e2e::auth;
use e2e::saga::settings;
use e2e::stock::{admin, at};
use e2e::system::System;
use orchestrator::dispatch::Transport;
use prost::bytes::{Buf, BufMut};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use ticket_platform::db::DatabaseConfig;
use ticket_proto::notify::v1 as notify_pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::order::v1::contact_service_client::ContactServiceClient;
use ticket_proto::order::v1::order_service_client::OrderServiceClient;
use ticket_proto::saga::v1 as saga_pb;
use ticket_proto::saga::v1::command::Body;
use ticket_proto::saga::v1::get_saga_request::Key;
use ticket_proto::saga::v1::order_event::Event;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;
use ticket_proto::saga::v1::saga_events_client::SagaEventsClient;
use ticket_proto::stock::v1 as stock_pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use ticket_proto::stock::v1::stock_service_client::StockServiceClient;
use tonic::Code::{
    AlreadyExists as Exists, FailedPrecondition as Precondition, InvalidArgument as Invalid,
    NotFound, Ok as Answered, OutOfRange,
};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The longest a case may take to be answered.
const WAIT: Duration = Duration::from_secs(30);
/// An id no table holds.
const UNKNOWN: i64 = 999_999_999;
/// An order number of the right shape that no service knows.
const NO_SUCH_ORDER: &str = "T00000000000000000000";
const NO_SUCH_SAGA: &str = "00000000-0000-7000-8000-000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let notify_database = e2e::fresh_database_config("t_notify_").await;
    let database = notify_database.clone();
    let system = System::start_notifying(
        e2e::messaging_config(3),
        settings(Duration::from_secs(3_600)),
        Transport::Grpc,
        false,
        // Its own database, known to the test, to be compared before and after.
        move |config| config.service.database = database,
    )
    .await;
    let f = Fixture::build(&system, &notify_database).await;
    let before = settled(&f).await;

    let mut cases = catalog_cases(&f);
    cases.extend(stock_cases(&f));
    cases.extend(order_cases(&f));
    cases.extend(notification_cases(&f));
    cases.extend(participant_cases(&f));
    cases.extend(saga_admin_cases(&f));
    // Last: the defects these find start sagas that go on in the background.
    cases.extend(event_cases(&f));
    let total = cases.len();
    let mut wrong = run(cases).await;
    wrong.extend(malformed_bytes(&f).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let changed = differences(&before, &snapshot(&f).await);

    let tier = f.tier.tier_id;
    drop(f);
    system.stop(&[tier]).await;
    assert!(
        wrong.is_empty() && changed.is_empty(),
        "{} of {total} cases (and the malformed bytes) answered wrong:\n{}\n\n\
         {} row(s) or key(s) changed by them:\n{}",
        wrong.len(),
        wrong.join("\n"),
        changed.len(),
        changed.join("\n")
    );
}

// ---- The cases ----

type Answer = Result<String, Status>;

/// One bad request: what it should be answered (for an OK answer, `message_contains` is
/// looked for in the response).
struct Case<'a> {
    name: &'static str,
    call: Pin<Box<dyn Future<Output = Answer> + 'a>>,
    expect: Code,
    message_contains: &'static str,
}

fn case<'a, T: std::fmt::Debug + 'a>(
    name: &'static str,
    expect: Code,
    message_contains: &'static str,
    call: impl Future<Output = Result<tonic::Response<T>, Status>> + 'a,
) -> Case<'a> {
    let call = async move {
        call.await
            .map(|answer| format!("{:?}", answer.into_inner()))
    };
    Case {
        name,
        call: Box::pin(call),
        expect,
        message_contains,
    }
}

/// Runs `cases` one after another; a line for each answered otherwise than it should be.
async fn run(cases: Vec<Case<'_>>) -> Vec<String> {
    let mut wrong = Vec::new();
    for case in cases {
        let (code, text) = match tokio::time::timeout(WAIT, case.call).await {
            Ok(Ok(body)) => (Code::Ok, body),
            Ok(Err(status)) => (status.code(), status.message().to_owned()),
            Err(_) => (Code::DeadlineExceeded, format!("no answer within {WAIT:?}")),
        };
        let wanted = case.message_contains.to_lowercase();
        if code != case.expect || !text.to_lowercase().contains(&wanted) {
            wrong.push(format!(
                "{}: expected {:?} mentioning {:?}, got {code:?} {:?}",
                case.name,
                case.expect,
                case.message_contains,
                shorten(&text)
            ));
        }
    }
    wrong
}

/// `base` changed by `change`: a valid request with one thing wrong.
fn with<T>(mut base: T, change: fn(&mut T)) -> T {
    change(&mut base);
    base
}

fn long() -> String {
    "x".repeat(10_000)
}

#[rustfmt::skip]
fn catalog_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let show = move |title: &str, venue: &str| {
        let request = stock_pb::CreateShowRequest { title: title.into(), venue: venue.into() };
        async move { f.catalog().create_show(admin(request)).await }
    };
    let session = move |change: fn(&mut stock_pb::CreateSessionRequest)| {
        let valid = stock_pb::CreateSessionRequest {
            show_id: f.tier.show_id,
            starts_at: at(7_200),
            sale_opens_at: at(-60),
            sale_closes_at: at(3_600),
            per_user_limit: 0,
        };
        let request = with(valid, change);
        async move { f.catalog().create_session(admin(request)).await }
    };
    let tier = move |change: fn(&mut stock_pb::CreateTierRequest)| {
        let valid = stock_pb::CreateTierRequest {
            session_id: f.tier.session_id,
            name: "Balcony".into(),
            price_cents: 5_000,
            total: 10,
            per_user_limit: 0,
        };
        let request = with(valid, change);
        async move { f.catalog().create_tier(admin(request)).await }
    };
    let get_show = move |show_id| async move {
        let request = stock_pb::GetShowRequest { show_id };
        f.catalog().get_show(request).await
    };
    let list_shows = move |page_size, page_token: &str| {
        let page_token = page_token.to_owned();
        let request = stock_pb::ListShowsRequest { page_size, page_token };
        async move { f.catalog().list_shows(request).await }
    };
    let get_tier = move |tier_id| async move {
        let request = stock_pb::GetTierRequest { tier_id };
        f.catalog().get_tier(request).await
    };
    vec![
        case("CreateShow: empty title", Invalid, "title", show("", "Hall")),
        case("CreateShow: blank title", Invalid, "title", show(" ", "Hall")),
        case("CreateShow: title 10k", Invalid, "title", show(&long(), "Hall")),
        case("CreateShow: venue 10k", Invalid, "venue", show("Gala", &long())),
        case("CreateShow: NUL in the title", Invalid, "title", show("Ga\0la", "Hall")),
        // Over the services' 64 KiB message limit: refused by tonic before the handler.
        case("CreateShow: title 100k", OutOfRange, "too large", show(&"x".repeat(100_000), "Hall")),
        case("CreateSession: show_id 0", Invalid, "show_id", session(|r| r.show_id = 0)),
        case("CreateSession: unknown show", NotFound, "show", session(|r| r.show_id = UNKNOWN)),
        case("CreateSession: no starts_at", Invalid, "starts_at", session(|r| r.starts_at = None)),
        case("CreateSession: nanos -1", Invalid, "sale_opens_at", session(|r| r.sale_opens_at = nanos(-1))),
        case("CreateSession: nanos 1.5e9", Invalid, "sale_opens_at", session(|r| r.sale_opens_at = leap_second(-120))),
        case("CreateSession: 7500 BC", Invalid, "sale_opens_at", session(|r| r.sale_opens_at = ancient())),
        case("CreateSession: opens after it closes", Invalid, "sale_opens_at", session(|r| r.sale_opens_at = at(5_000))),
        case("CreateSession: closes after it starts", Invalid, "sale_closes_at", session(|r| r.sale_closes_at = at(9_000))),
        case("CreateSession: limit -1", Invalid, "per_user_limit", session(|r| r.per_user_limit = -1)),
        case("CreateSession: limit i32::MAX", Invalid, "per_user_limit", session(|r| r.per_user_limit = i32::MAX)),
        case("CreateTier: session_id -1", Invalid, "session_id", tier(|r| r.session_id = -1)),
        case("CreateTier: unknown session", NotFound, "session", tier(|r| r.session_id = UNKNOWN)),
        case("CreateTier: total 0", Invalid, "total", tier(|r| r.total = 0)),
        case("CreateTier: total i64::MAX", Invalid, "total", tier(|r| r.total = i64::MAX)),
        case("CreateTier: price -1", Invalid, "price_cents", tier(|r| r.price_cents = -1)),
        case("CreateTier: name 10k", Invalid, "name", tier(|r| r.name = long())),
        // The session's limit is 4: a tier's cap can only be lower.
        case("CreateTier: cap above the session's", Invalid, "per_user_limit", tier(|r| r.per_user_limit = 5)),
        case("CreateTier: cap -1", Invalid, "per_user_limit", tier(|r| r.per_user_limit = -1)),
        case("CreateTier: a name taken", Exists, "Floor", tier(|r| r.name = "Floor".into())),
        case("GetShow: show_id 0", Invalid, "show_id", get_show(0)),
        case("GetShow: unknown show", NotFound, "show", get_show(UNKNOWN)),
        case("ListShows: page_size -1", Invalid, "page_size", list_shows(-1, "")),
        case("ListShows: page_token garbage", Invalid, "page_token", list_shows(0, "garbage")),
        case("ListShows: page_token -3", Invalid, "page_token", list_shows(0, "-3")),
        case("GetTier: tier_id -1", Invalid, "tier_id", get_tier(-1)),
        case("GetTier: unknown tier", NotFound, "tier", get_tier(UNKNOWN)),
    ]
}

#[rustfmt::skip]
fn stock_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let tier_id = f.tier.tier_id;
    let prededuct = move |change: fn(&mut stock_pb::PredeductRequest)| {
        let valid = stock_pb::PredeductRequest {
            order_no: NO_SUCH_ORDER.into(),
            tier_id,
            user_id: "dan".into(),
            quantity: 1,
        };
        let request = with(valid, change);
        async move { f.stock().prededuct(admin(request)).await }
    };
    let confirm = move |order_no: &str, tier_id| {
        let request = stock_pb::ConfirmRequest { order_no: order_no.into(), tier_id };
        async move { f.stock().confirm(admin(request)).await }
    };
    let rollback = move |order_no: &str, tier_id| {
        let request = stock_pb::RollbackRequest { order_no: order_no.into(), tier_id };
        async move { f.stock().rollback(admin(request)).await }
    };
    let get_stock = move |tier_id| async move {
        let request = stock_pb::GetStockRequest { tier_id };
        f.stock().get_stock(admin(request)).await
    };
    let reconcile = move |tier_id, repair| async move {
        let request = stock_pb::ReconcileRequest { tier_id, repair };
        f.stock().reconcile(admin(request)).await
    };
    vec![
        case("Prededuct: empty order_no", Invalid, "order_no", prededuct(|r| r.order_no.clear())),
        case("Prededuct: order_no 10k", Invalid, "order_no", prededuct(|r| r.order_no = long())),
        case("Prededuct: space in user_id", Invalid, "user_id", prededuct(|r| r.user_id = "d n".into())),
        case("Prededuct: quantity 0", Invalid, "quantity", prededuct(|r| r.quantity = 0)),
        case("Prededuct: quantity -5", Invalid, "quantity", prededuct(|r| r.quantity = -5)),
        case("Prededuct: quantity i32::MAX", Invalid, "quantity", prededuct(|r| r.quantity = i32::MAX)),
        case("Prededuct: tier_id 0", Invalid, "tier_id", prededuct(|r| r.tier_id = 0)),
        case("Prededuct: unknown tier", NotFound, "tier", prededuct(|r| r.tier_id = UNKNOWN)),
        case("Confirm: an order holding nothing", Precondition, "prededuct", confirm(NO_SUCH_ORDER, tier_id)),
        case("Confirm: space in order_no", Invalid, "order_no", confirm("T 1", tier_id)),
        case("Confirm: unknown tier", NotFound, "tier", confirm(NO_SUCH_ORDER, UNKNOWN)),
        case("Rollback: empty order_no", Invalid, "order_no", rollback("", tier_id)),
        case("Rollback: tier_id -1", Invalid, "tier_id", rollback(NO_SUCH_ORDER, -1)),
        case("Rollback: unknown tier", NotFound, "tier", rollback(NO_SUCH_ORDER, UNKNOWN)),
        case("GetStock: tier_id 0", Invalid, "tier_id", get_stock(0)),
        case("GetStock: unknown tier", NotFound, "tier", get_stock(UNKNOWN)),
        case("Reconcile: tier_id -1", Invalid, "tier_id", reconcile(-1, false)),
        case("Reconcile: repair an unknown tier", NotFound, "tier", reconcile(UNKNOWN, true)),
    ]
}

#[rustfmt::skip]
fn order_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    // A buyer of its own for each CreateOrder: where buyers' creates are rate-limited, the
    // cases still reach validation.
    let create = move |user: &'static str, change: fn(&mut order_pb::CreateOrderRequest)| {
        let valid = order_pb::CreateOrderRequest {
            user_id: user.into(),
            tier_id: f.tier.tier_id,
            quantity: 1,
            request_id: "r1".into(),
            ..Default::default()
        };
        let request = with(valid, change);
        async move { f.orders().create_order(auth::buyer(user, request)).await }
    };
    let get = move |order_no: String| async move {
        let request = order_pb::GetOrderRequest { order_no };
        f.orders().get_order(auth::buyer("ann", request)).await
    };
    let list = move |change: fn(&mut order_pb::ListOrdersRequest)| {
        let valid = order_pb::ListOrdersRequest {
            user_id: "ann".into(),
            ..Default::default()
        };
        let request = with(valid, change);
        async move { f.orders().list_orders(auth::buyer("ann", request)).await }
    };
    let watch = move |order_no: String| async move {
        let request = order_pb::WatchOrderRequest { order_no };
        f.orders().watch_order(auth::buyer("ann", request)).await
    };
    let pay = move |change: fn(&mut order_pb::PayOrderRequest)| {
        let request = with(payment(&f.awaiting, "pay-ann"), change);
        async move { f.orders().pay_order(auth::payment(request)).await }
    };
    let pay_order = move |order: &'a order_pb::Order, payment_ref: &str| {
        let request = payment(order, payment_ref);
        async move { f.orders().pay_order(auth::payment(request)).await }
    };
    let cancel = move |user: &'static str, order_no: &str, reason: String| {
        let order_no = order_no.to_owned();
        let request = order_pb::CancelOrderRequest { order_no, reason };
        async move { f.orders().cancel_order(auth::buyer(user, request)).await }
    };
    let contact = move |order_no: String| async move {
        let request = order_pb::GetContactRequest { order_no };
        f.contacts().get_contact(auth::service(request)).await
    };
    let (awaiting, paid) = (f.awaiting.order_no.as_str(), f.confirmed.order_no.as_str());
    vec![
        case("CreateOrder: tier_id 0", Invalid, "tier_id", create("eve1", |r| r.tier_id = 0)),
        case("CreateOrder: unknown tier", NotFound, "tier", create("eve2", |r| r.tier_id = UNKNOWN)),
        case("CreateOrder: quantity 0", Invalid, "quantity", create("eve3", |r| r.quantity = 0)),
        case("CreateOrder: quantity -1", Invalid, "quantity", create("eve4", |r| r.quantity = -1)),
        case("CreateOrder: quantity i32::MAX", Invalid, "quantity", create("eve5", |r| r.quantity = i32::MAX)),
        // The tier's limit per buyer is 4.
        case("CreateOrder: above the limit", Invalid, "quantity", create("eve6", |r| r.quantity = 5)),
        case("CreateOrder: empty request_id", Invalid, "request_id", create("eve7", |r| r.request_id.clear())),
        case("CreateOrder: request_id 10k", Invalid, "request_id", create("eve8", |r| r.request_id = long())),
        case("CreateOrder: e-mail without @", Invalid, "contact.email", create("eve9", |r| r.contact = email("ann.example.com"))),
        case("CreateOrder: phone not E.164", Invalid, "contact.phone", create("eve10", |r| r.contact = phone("12345"))),
        case("GetOrder: empty order_no", Invalid, "order_no", get(String::new())),
        case("GetOrder: order_no 10k", Invalid, "order_no", get(long())),
        case("GetOrder: unknown order", NotFound, "order", get(NO_SUCH_ORDER.into())),
        case("ListOrders: page_size -1", Invalid, "page_size", list(|r| r.page_size = -1)),
        case("ListOrders: page_size 101", Invalid, "page_size", list(|r| r.page_size = 101)),
        case("ListOrders: page_token garbage", Invalid, "page_token", list(|r| r.page_token = "garbage".into())),
        case("ListOrders: page_token 0", Invalid, "page_token", list(|r| r.page_token = "0".into())),
        case("WatchOrder: empty order_no", Invalid, "order_no", watch(String::new())),
        case("WatchOrder: unknown order", NotFound, "order", watch(NO_SUCH_ORDER.into())),
        case("PayOrder: empty order_no", Invalid, "order_no", pay(|r| r.order_no.clear())),
        case("PayOrder: unknown order", NotFound, "order", pay(|r| r.order_no = NO_SUCH_ORDER.into())),
        case("PayOrder: empty payment_ref", Invalid, "payment_ref", pay(|r| r.payment_ref.clear())),
        case("PayOrder: payment_ref 10k", Invalid, "payment_ref", pay(|r| r.payment_ref = long())),
        case("PayOrder: amount 0", Invalid, "amount_cents", pay(|r| r.amount_cents = 0)),
        case("PayOrder: amount -100", Invalid, "amount_cents", pay(|r| r.amount_cents = -100)),
        case("PayOrder: a cent too much", Invalid, "amount_cents", pay(|r| r.amount_cents += 1)),
        case("PayOrder: amount i64::MAX", Invalid, "amount_cents", pay(|r| r.amount_cents = i64::MAX)),
        case("PayOrder: bob's payment_ref", Exists, "payment_ref", pay_order(&f.awaiting, &f.confirmed.payment_ref)),
        case("PayOrder: a cancelled order", Precondition, "cancelled", pay_order(&f.cancelled, "pay-cat")),
        case("PayOrder: paid again", Precondition, "already paid", pay_order(&f.confirmed, "pay-again")),
        case("CancelOrder: empty order_no", Invalid, "order_no", cancel("ann", "", String::new())),
        case("CancelOrder: unknown order", NotFound, "order", cancel("ann", NO_SUCH_ORDER, String::new())),
        case("CancelOrder: reason 10k", Invalid, "reason", cancel("ann", awaiting, long())),
        case("CancelOrder: NUL in the reason", Invalid, "reason", cancel("ann", awaiting, "x\0y".into())),
        case("CancelOrder: a paid order", Precondition, "paid", cancel("bob", paid, String::new())),
        case("GetContact: empty order_no", Invalid, "order_no", contact(String::new())),
        case("GetContact: order_no 10k", Invalid, "order_no", contact(long())),
        case("GetContact: unknown order", NotFound, "order", contact(NO_SUCH_ORDER.into())),
    ]
}

#[rustfmt::skip]
fn notification_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let list = move |order_no: String| async move {
        let request = notify_pb::ListNotificationsRequest { order_no };
        f.notifications().list_notifications(auth::buyer("ann", request)).await
    };
    // bob's SMS that his purchase is confirmed: sent.
    let retry = move |change: fn(&mut notify_pb::RetryNotificationRequest)| {
        let valid = notify_pb::RetryNotificationRequest {
            order_no: f.confirmed.order_no.clone(),
            channel: notify_pb::Channel::Sms as i32,
            template: "purchase_confirmed".into(),
        };
        let request = with(valid, change);
        async move { f.notifications().retry_notification(admin(request)).await }
    };
    let failed = move |limit| async move {
        let request = notify_pb::ListFailedNotificationsRequest { limit };
        f.notifications().list_failed_notifications(admin(request)).await
    };
    vec![
        case("ListNotifications: empty order_no", Invalid, "order_no", list(String::new())),
        case("ListNotifications: order_no 10k", Invalid, "order_no", list(long())),
        // notify-svc does not know orders: an unknown one has no notifications, as another
        // buyer's reads (`access.rs`), so neither is confirmed to exist.
        case("ListNotifications: unknown order", Code::Ok, "notifications: []", list(NO_SUCH_ORDER.into())),
        case("RetryNotification: channel 99", Invalid, "channel", retry(|r| r.channel = 99)),
        case("RetryNotification: channel -1", Invalid, "channel", retry(|r| r.channel = -1)),
        case("RetryNotification: channel UNSPECIFIED", Invalid, "channel", retry(|r| r.channel = 0)),
        case("RetryNotification: empty order_no", Invalid, "order_no", retry(|r| r.order_no.clear())),
        case("RetryNotification: empty template", Invalid, "template", retry(|r| r.template.clear())),
        case("RetryNotification: no such template", Invalid, "template", retry(|r| r.template = "welcome".into())),
        case("RetryNotification: unknown order", NotFound, "order", retry(|r| r.order_no = NO_SUCH_ORDER.into())),
        case("RetryNotification: one SENT", Precondition, "not FAILED", retry(|_| {})),
        // At most 100 are listed: a larger limit is capped, not refused.
        case("ListFailedNotifications: u32::MAX", Answered, "", failed(u32::MAX)),
    ]
}

#[rustfmt::skip]
fn participant_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let stock = move |change: fn(&mut saga_pb::Command)| {
        let command = with(command(deduct_body(f.tier.tier_id)), change);
        async move { f.system.stock().participant().execute(auth::service(command)).await }
    };
    let order = move |body: Body| {
        let command = command(body);
        async move { f.system.order.participant().execute(auth::service(command)).await }
    };
    let notify = move |change: fn(&mut saga_pb::Command)| {
        let command = with(command(notify_body("SMS", "dan", "purchase_confirmed")), change);
        async move { f.notify_participant().execute(auth::service(command)).await }
    };
    vec![
        case("stock Execute: no saga_id", Invalid, "saga_id", stock(|c| c.saga_id.clear())),
        case("stock Execute: step not a name", Invalid, "step", stock(|c| c.step = "NOT A STEP!".into())),
        case("stock Execute: step 10k", Invalid, "step", stock(|c| c.step = long())),
        case("stock Execute: no body", Invalid, "body", stock(|c| c.body = None)),
        case("stock Execute: an order command", Invalid, "does not handle", stock(|c| c.body = Some(confirm_body()))),
        case("stock Execute: quantity 0", Invalid, "quantity", stock(|c| deduct(c).quantity = 0)),
        case("stock Execute: empty user_id", Invalid, "user_id", stock(|c| deduct(c).user_id.clear())),
        case("stock Execute: order_no 10k", Invalid, "order_no", stock(|c| c.order_no = long())),
        // A business refusal is a reply (the orchestrator compensates on it), not an error.
        case("stock Execute: unknown tier", Answered, "UNKNOWN_TIER", stock(|c| deduct(c).tier_id = UNKNOWN)),
        case("order Execute: cancel reason BOGUS", Invalid, "reason", order(cancel_body("BOGUS"))),
        case("order Execute: reserve without expire_at", Invalid, "expire_at", order(reserve_body(100, None))),
        case("order Execute: negative price", Invalid, "unit_price_cents", order(reserve_body(-1, at(600)))),
        case("order Execute: a stock command", Invalid, "ORDER_RESERVE", order(deduct_body(1))),
        case("order Execute: unknown order", Answered, "UNKNOWN_ORDER", order(confirm_body())),
        case("notify Execute: channel FAX", Invalid, "channel", notify(|c| notice(c).channel = "FAX".into())),
        case("notify Execute: no such template", Invalid, "template", notify(|c| notice(c).template = "welcome".into())),
        case("notify Execute: empty user_id", Invalid, "user_id", notify(|c| notice(c).user_id.clear())),
        case("notify Execute: a stock command", Invalid, "notifications only", notify(|c| c.body = Some(deduct_body(1)))),
    ]
}

#[rustfmt::skip]
fn saga_admin_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let list = move |change: fn(&mut saga_pb::ListSagasRequest)| {
        let request = with(saga_pb::ListSagasRequest::default(), change);
        async move { f.sagas().list_sagas(admin(request)).await }
    };
    let get = move |key| async move {
        let request = saga_pb::GetSagaRequest { key: Some(key) };
        f.sagas().get_saga(admin(request)).await
    };
    let saga_ref = |saga_id: &str, reason: String| {
        let saga_id = saga_id.to_owned();
        admin(saga_pb::SagaRef { saga_id, reason })
    };
    let retry = move |id: &str, reason| {
        let request = saga_ref(id, reason);
        async move { f.sagas().retry_saga(request).await }
    };
    let compensate = move |id: &str| {
        let request = saga_ref(id, String::new());
        async move { f.sagas().compensate_saga(request).await }
    };
    let skip = move |id: &str, reason| {
        let request = saga_ref(id, reason);
        async move { f.sagas().skip_step(request).await }
    };
    let dead_letters = move |page_size, page_token: &str| {
        let page_token = page_token.to_owned();
        let request = saga_pb::ListDeadLettersRequest { page_size, page_token };
        async move { f.sagas().list_dead_letters(admin(request)).await }
    };
    let redrive = move |message_id: String| async move {
        let request = saga_pb::RedriveDeadLetterRequest { message_id };
        f.sagas().redrive_dead_letter(admin(request)).await
    };
    let no_key = async move {
        let request = saga_pb::GetSagaRequest { key: None };
        f.sagas().get_saga(admin(request)).await
    };
    let (waiting, completed) = (f.waiting_saga.as_str(), f.completed_saga.as_str());
    vec![
        case("ListSagas: state BOGUS", Invalid, "state", list(|r| r.state = "BOGUS".into())),
        case("ListSagas: page_size -1", Invalid, "page_size", list(|r| r.page_size = -1)),
        case("ListSagas: page_size 501", Invalid, "page_size", list(|r| r.page_size = 501)),
        case("ListSagas: page_token garbage", Invalid, "page_token", list(|r| r.page_token = "garbage".into())),
        case("GetSaga: no key", Invalid, "saga_id", no_key),
        case("GetSaga: empty saga_id", Invalid, "saga_id", get(Key::SagaId(String::new()))),
        case("GetSaga: saga_id 10k", Invalid, "saga_id", get(Key::SagaId(long()))),
        case("GetSaga: NUL in saga_id", Invalid, "saga_id", get(Key::SagaId("a\0b".into()))),
        case("GetSaga: order_no 10k", Invalid, "order_no", get(Key::OrderNo(long()))),
        case("GetSaga: unknown saga", NotFound, "saga", get(Key::SagaId(NO_SUCH_SAGA.into()))),
        case("RetrySaga: empty saga_id", Invalid, "saga_id", retry("", String::new())),
        case("RetrySaga: unknown saga", NotFound, "saga", retry(NO_SUCH_SAGA, String::new())),
        case("RetrySaga: a completed saga", Precondition, "parked", retry(completed, String::new())),
        case("RetrySaga: reason 10k", Invalid, "reason", retry(waiting, long())),
        case("CompensateSaga: a completed saga", Precondition, "finished", compensate(completed)),
        case("CompensateSaga: a compensated saga", Precondition, "finished", compensate(f.compensated_saga.as_str())),
        case("CompensateSaga: unknown saga", NotFound, "saga", compensate(NO_SUCH_SAGA)),
        case("SkipStep: no reason", Invalid, "reason", skip(waiting, String::new())),
        case("SkipStep: a waiting saga", Precondition, "parked", skip(waiting, "done by hand".into())),
        case("ListDeadLetters: page_size 501", Invalid, "page_size", dead_letters(501, "")),
        case("ListDeadLetters: page_token garbage", Invalid, "page_token", dead_letters(0, "garbage")),
        case("ListDeadLetters: page_token -5", Invalid, "page_token", dead_letters(0, "-5")),
        case("RedriveDeadLetter: empty message_id", Invalid, "message_id", redrive(String::new())),
        case("RedriveDeadLetter: message_id 10k", Invalid, "message_id", redrive(long())),
        case("RedriveDeadLetter: NUL in message_id", Invalid, "message_id", redrive("a\0b".into())),
        case("RedriveDeadLetter: unknown", NotFound, "dead letter", redrive(NO_SUCH_SAGA.into())),
    ]
}

#[rustfmt::skip]
fn event_cases<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let deliver = move |event: Option<Event>| async move {
        let request = saga_pb::OrderEvent { event };
        f.events().deliver(auth::service(request)).await
    };
    let tier = f.tier.tier_id;
    vec![
        case("Deliver: no event", Invalid, "event", deliver(None)),
        case("Deliver: created, empty order_no", Invalid, "order_no", deliver(created("", "dan", tier, 1))),
        case("Deliver: created, quantity 0", Invalid, "quantity", deliver(created("TBAD1", "dan", tier, 0))),
        case("Deliver: created, tier_id -1", Invalid, "tier_id", deliver(created("TBAD2", "dan", -1, 1))),
        case("Deliver: created, empty user_id", Invalid, "user_id", deliver(created("TBAD3", "", tier, 1))),
        case("Deliver: created, order_no 10k", Invalid, "order_no", deliver(created(&long(), "dan", tier, 1))),
        case("Deliver: paid, empty order_no", Invalid, "order_no", deliver(paid(""))),
        case("Deliver: cancelled, reason BOGUS", Invalid, "reason", deliver(cancelled("TBAD4", "BOGUS"))),
        case("Deliver: cancelled, empty order_no", Invalid, "order_no", deliver(cancelled("", "USER_CANCELLED"))),
    ]
}

// ---- Request parts ----

/// A time a minute or two from now with nanoseconds of -1 (a Timestamp's are 0 to 999,999,999).
fn nanos(nanos: i32) -> Option<prost_types::Timestamp> {
    at(-60).map(|t| prost_types::Timestamp { nanos, ..t })
}

/// The 59th second of the minute `seconds_from_now` falls in, plus 1.5 s of nanoseconds: no
/// Timestamp (nanos must be below 1e9), though chrono reads it as a leap second.
fn leap_second(seconds_from_now: i64) -> Option<prost_types::Timestamp> {
    let seconds = at(seconds_from_now).map_or(0, |t| t.seconds);
    Some(prost_types::Timestamp {
        seconds: seconds - seconds.rem_euclid(60) + 59,
        nanos: 1_500_000_000,
    })
}

/// About 7500 BC: a time chrono holds and Postgres does not (its earliest is 4713 BC).
fn ancient() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: -300_000_000_000,
        nanos: 0,
    })
}

fn email(email: &str) -> Option<order_pb::Contact> {
    Some(order_pb::Contact {
        email: email.into(),
        ..Default::default()
    })
}

fn phone(phone: &str) -> Option<order_pb::Contact> {
    Some(order_pb::Contact {
        phone: phone.into(),
        ..Default::default()
    })
}

/// A command of a saga no one runs, for an order no one has.
fn command(body: Body) -> saga_pb::Command {
    saga_pb::Command {
        saga_id: "saga-bad-input".into(),
        order_no: NO_SUCH_ORDER.into(),
        step: "BAD_INPUT".into(),
        attempt: 1,
        body: Some(body),
    }
}

fn deduct_body(tier_id: i64) -> Body {
    Body::StockDeduct(saga_pb::StockDeduct {
        tier_id,
        user_id: "dan".into(),
        quantity: 1,
    })
}

fn deduct(command: &mut saga_pb::Command) -> &mut saga_pb::StockDeduct {
    match &mut command.body {
        Some(Body::StockDeduct(deduct)) => deduct,
        other => panic!("not a STOCK_DEDUCT: {other:?}"),
    }
}

fn confirm_body() -> Body {
    Body::OrderConfirm(saga_pb::OrderConfirm {})
}

fn reserve_body(unit_price_cents: i64, expire_at: Option<prost_types::Timestamp>) -> Body {
    Body::OrderReserve(saga_pb::OrderReserve {
        unit_price_cents,
        expire_at,
    })
}

fn cancel_body(reason: &str) -> Body {
    Body::OrderCancel(saga_pb::OrderCancel {
        reason: reason.into(),
    })
}

fn notify_body(channel: &str, user_id: &str, template: &str) -> Body {
    Body::Notify(saga_pb::Notify {
        channel: channel.into(),
        user_id: user_id.into(),
        template: template.into(),
        channels: Vec::new(),
    })
}

fn notice(command: &mut saga_pb::Command) -> &mut saga_pb::Notify {
    match &mut command.body {
        Some(Body::Notify(notice)) => notice,
        other => panic!("not a notification: {other:?}"),
    }
}

fn created(order_no: &str, user_id: &str, tier_id: i64, quantity: i32) -> Option<Event> {
    Some(Event::Created(saga_pb::OrderCreated {
        order_no: order_no.into(),
        user_id: user_id.into(),
        tier_id,
        quantity,
        created_at: at(0),
    }))
}

fn paid(order_no: &str) -> Option<Event> {
    Some(Event::Paid(saga_pb::OrderPaid {
        order_no: order_no.into(),
        payment_ref: "pay-nobody".into(),
        amount_cents: 100,
        paid_at: at(0),
    }))
}

fn cancelled(order_no: &str, reason: &str) -> Option<Event> {
    Some(Event::Cancelled(saga_pb::OrderCancelled {
        order_no: order_no.into(),
        reason: reason.into(),
        cancelled_at: at(0),
    }))
}

// ---- The system the cases meet ----

/// A tier on sale (100 tickets, 4 per buyer) and three orders of it, one in each resting state.
struct Fixture<'a> {
    system: &'a System,
    tier: stock_pb::Tier,
    /// ann's, awaiting payment (its saga WAITING, its deadline an hour away).
    awaiting: order_pb::Order,
    /// bob's, paid and confirmed (its saga COMPLETED, his notifications sent).
    confirmed: order_pb::Order,
    /// cat's, cancelled by her (its saga COMPENSATED).
    cancelled: order_pb::Order,
    waiting_saga: String,
    completed_saga: String,
    compensated_saga: String,
    databases: Vec<(&'static str, DatabaseConnection)>,
}

impl<'a> Fixture<'a> {
    async fn build(system: &'a System, notify_database: &DatabaseConfig) -> Self {
        let tier = system.stock().tier(100, 4).await;
        let awaiting = reserved(system, "ann", tier.tier_id).await;
        let bobs = reserved(system, "bob", tier.tier_id).await;
        let bob_pays = payment(&bobs, &format!("pay-{}", bobs.order_no));
        let orders = || system.order.orders();
        orders()
            .pay_order(auth::payment(bob_pays))
            .await
            .expect("bob pays");
        let completed = system.saga_reaches(&bobs.order_no, "COMPLETED").await;
        let cats = reserved(system, "cat", tier.tier_id).await;
        let cancel = order_pb::CancelOrderRequest {
            order_no: cats.order_no.clone(),
            reason: "changed my mind".into(),
        };
        orders()
            .cancel_order(auth::buyer("cat", cancel))
            .await
            .expect("cat cancels");
        let compensated = system.saga_reaches(&cats.order_no, "COMPENSATED").await;
        let waiting = system.saga_reaches(&awaiting.order_no, "WAITING").await;
        notified(system, "bob", &bobs.order_no).await;
        let connect = ticket_platform::db::connect;
        let notify = connect(notify_database)
            .await
            .expect("notify-svc's database");
        let saga_log = connect(&system.orchestrator_database)
            .await
            .expect("the saga log");
        let databases = vec![
            ("stock-svc", system.stock().db.clone()),
            ("order-svc", system.order.db.clone()),
            ("notify-svc", notify),
            ("orchestrator", saga_log),
        ];
        Self {
            system,
            confirmed: order_of(system, "bob", &bobs.order_no).await,
            cancelled: order_of(system, "cat", &cats.order_no).await,
            awaiting,
            tier,
            waiting_saga: waiting.saga_id,
            completed_saga: completed.saga_id,
            compensated_saga: compensated.saga_id,
            databases,
        }
    }

    fn catalog(&self) -> CatalogServiceClient<Channel> {
        self.system.stock().catalog()
    }

    fn stock(&self) -> StockServiceClient<Channel> {
        self.system.stock().stock()
    }

    fn orders(&self) -> OrderServiceClient<Channel> {
        self.system.order.orders()
    }

    fn contacts(&self) -> ContactServiceClient<Channel> {
        self.system.order.contacts()
    }

    fn notifications(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.system.notify.channel.clone())
    }

    fn notify_participant(&self) -> ParticipantClient<Channel> {
        ParticipantClient::new(self.system.notify.channel.clone())
    }

    fn sagas(&self) -> SagaAdminClient<Channel> {
        self.system.admin()
    }

    fn events(&self) -> SagaEventsClient<Channel> {
        SagaEventsClient::new(self.system.orchestrator.channel.clone())
    }
}

/// `order` paid in full under `payment_ref`.
fn payment(order: &order_pb::Order, payment_ref: &str) -> order_pb::PayOrderRequest {
    order_pb::PayOrderRequest {
        order_no: order.order_no.clone(),
        payment_ref: payment_ref.into(),
        amount_cents: order.total_cents,
    }
}

/// `user`'s new order of one ticket of `tier_id`, once its saga holds the ticket and awaits
/// payment.
async fn reserved(system: &System, user: &str, tier_id: i64) -> order_pb::Order {
    let request = order_pb::CreateOrderRequest {
        user_id: user.into(),
        tier_id,
        quantity: 1,
        request_id: format!("{user}-1"),
        ..Default::default()
    };
    let created = system
        .order
        .orders()
        .create_order(auth::buyer(user, request))
        .await
        .expect("create an order")
        .into_inner();
    system.saga_reaches(&created.order_no, "WAITING").await;
    order_of(system, user, &created.order_no).await
}

async fn order_of(system: &System, user: &str, order_no: &str) -> order_pb::Order {
    let request = order_pb::GetOrderRequest {
        order_no: order_no.into(),
    };
    system
        .order
        .orders()
        .get_order(auth::buyer(user, request))
        .await
        .expect("get the order")
        .into_inner()
}

/// Waits until `order_no` has its three notifications, none waiting to be sent.
async fn notified(system: &System, user: &str, order_no: &str) {
    e2e::eventually(
        Duration::from_secs(60),
        "three notifications sent",
        || async {
            let request = notify_pb::ListNotificationsRequest {
                order_no: order_no.into(),
            };
            let listed = NotificationServiceClient::new(system.notify.channel.clone())
                .list_notifications(auth::buyer(user, request))
                .await
                .ok()?
                .into_inner()
                .notifications;
            let waiting =
                |n: &notify_pb::Notification| matches!(n.status.as_str(), "PENDING" | "SENDING");
            (listed.len() >= 3 && !listed.iter().any(waiting)).then_some(())
        },
    )
    .await;
}

// ---- Snapshots: every row of every table, every Redis key of the live stock ----

/// Rows (as text) by `<service> <table>`, and the Redis keys under `redis`.
type Snapshot = BTreeMap<String, Vec<String>>;

async fn snapshot(f: &Fixture<'_>) -> Snapshot {
    let tables = "SELECT table_name::text AS line FROM information_schema.tables \
                  WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1";
    let mut all = Snapshot::new();
    for (service, db) in &f.databases {
        for table in rows_of(db, tables).await {
            let rows = format!("SELECT t::text AS line FROM \"{table}\" t ORDER BY 1");
            all.insert(format!("{service} {table}"), rows_of(db, &rows).await);
        }
    }
    let stock = f.system.stock();
    all.insert(
        "redis".into(),
        redis_keys(&stock.redis_url, &stock.key_prefix),
    );
    all
}

async fn rows_of(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| row.try_get("", "line").expect("a text column"))
        .collect()
}

/// Every key under the prefix with its type and value (a hash's fields sorted), in one call.
const DUMP_KEYS: &str = "
local out = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local kind = redis.call('TYPE', key).ok
  local value = {}
  if kind == 'hash' then
    local h = redis.call('HGETALL', key)
    for i = 1, #h, 2 do value[#value + 1] = h[i] .. '=' .. h[i + 1] end
    table.sort(value)
  elseif kind == 'string' then value = {redis.call('GET', key)}
  elseif kind == 'zset' then value = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'set' then value = redis.call('SMEMBERS', key); table.sort(value)
  elseif kind == 'list' then value = redis.call('LRANGE', key, 0, -1)
  end
  out[#out + 1] = key .. ' ' .. kind .. ' ' .. table.concat(value, ',')
end
table.sort(out)
return out";

fn redis_keys(url: &str, prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-u", url, "EVAL", DUMP_KEYS, "0"])
        .arg(format!("{prefix}:*"))
        .output()
        .expect("run redis-cli");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.starts_with("ERR"),
        "redis-cli: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().map(str::to_owned).collect()
}

/// A snapshot once two taken 3 s apart agree: the system finished what the fixture set off.
async fn settled(f: &Fixture<'_>) -> Snapshot {
    let mut last = snapshot(f).await;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = snapshot(f).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the system did not settle within 2 minutes");
}

/// A line per row or key that one snapshot has and the other not.
fn differences(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut lines = Vec::new();
    for name in names {
        let was = before.get(name).map(Vec::as_slice).unwrap_or_default();
        let now = after.get(name).map(Vec::as_slice).unwrap_or_default();
        let gone = was.iter().filter(|row| !now.contains(row));
        let new = now.iter().filter(|row| !was.contains(row));
        lines.extend(gone.map(|row| format!("{name}: - {}", shorten(row))));
        lines.extend(new.map(|row| format!("{name}: + {}", shorten(row))));
    }
    lines
}

fn shorten(text: &str) -> String {
    let short: String = text.chars().take(240).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

// ---- Malformed protobuf, through a codec that sends bytes as they are ----

/// Sends the bytes it is given as the request message; gives back the answer's bytes.
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

type Credential = fn(Vec<u8>) -> Request<Vec<u8>>;

/// A method, the process that serves it, the credential it takes, and the number of a string
/// field of its request (inside the request's message field `inside`, when not 0).
struct RawTarget {
    process: &'static str,
    channel: Channel,
    path: String,
    credential: Credential,
    text_field: u8,
    inside: u8,
}

fn raw(
    process: &'static str,
    channel: &Channel,
    service: &str,
    method: &str,
    credential: Credential,
    text_field: u8,
) -> RawTarget {
    RawTarget {
        process,
        channel: channel.clone(),
        path: format!("/{service}/{method}"),
        credential,
        text_field,
        inside: 0,
    }
}

#[rustfmt::skip]
fn raw_targets(f: &Fixture<'_>) -> Vec<RawTarget> {
    use ticket_proto::service_names::{CATALOG, NOTIFICATION, ORDER, PARTICIPANT, SAGA_ADMIN, STOCK};
    let (stock, order) = (&f.system.stock().channel, &f.system.order.channel);
    let (notify, orchestrator) = (&f.system.notify.channel, &f.system.orchestrator.channel);
    let buyer: Credential = |message| auth::buyer("ann", message);
    vec![
        raw("stock-svc", stock, CATALOG, "CreateShow", admin, 1),
        // ListShowsRequest's string is page_token, its field 2.
        raw("stock-svc", stock, CATALOG, "ListShows", Request::new, 2),
        raw("stock-svc", stock, STOCK, "Prededuct", admin, 1),
        raw("stock-svc", stock, PARTICIPANT, "Execute", auth::service, 1),
        raw("order-svc", order, ORDER, "CreateOrder", buyer, 1),
        raw("order-svc", order, ORDER, "PayOrder", auth::payment, 1),
        raw("order-svc", order, ORDER, "CancelOrder", buyer, 1),
        raw("order-svc", order, "ticket.order.v1.ContactService", "GetContact", auth::service, 1),
        raw("order-svc", order, PARTICIPANT, "Execute", auth::service, 1),
        raw("notify-svc", notify, NOTIFICATION, "ListNotifications", buyer, 1),
        raw("notify-svc", notify, NOTIFICATION, "RetryNotification", admin, 1),
        raw("notify-svc", notify, PARTICIPANT, "Execute", auth::service, 1),
        raw("orchestrator", orchestrator, SAGA_ADMIN, "ListSagas", admin, 1),
        raw("orchestrator", orchestrator, SAGA_ADMIN, "GetSaga", admin, 1),
        raw("orchestrator", orchestrator, SAGA_ADMIN, "RedriveDeadLetter", admin, 1),
        // OrderEvent's field 1 is OrderCreated, whose field 1 is order_no.
        RawTarget {
            inside: 1,
            ..raw("orchestrator", orchestrator, "ticket.saga.v1.SagaEvents", "Deliver", auth::service, 1)
        },
    ]
}

/// Bytes no encoder writes, each aimed at the string field `field` (wrapped in the message field
/// `inside` when not 0).
fn malformed(field: u8, inside: u8) -> Vec<(&'static str, Vec<u8>)> {
    let delimited = (field << 3) | 2;
    let unwrapped = [
        ("a varint where a string goes", vec![field << 3, 0x01]),
        ("a length past the end", vec![delimited, 0x10, b'a']),
        (
            "invalid UTF-8 in a string",
            vec![delimited, 0x02, 0xC3, 0x28],
        ),
        // Field 15 (none has it) as a varint whose last byte says more follow.
        ("a truncated varint", vec![15 << 3, 0xFF]),
    ];
    let wrap = |bytes: Vec<u8>| match inside {
        0 => bytes,
        _ => [vec![(inside << 3) | 2, bytes.len() as u8], bytes].concat(),
    };
    unwrapped
        .into_iter()
        .map(|(what, bytes)| (what, wrap(bytes)))
        .collect()
}

async fn raw_call(target: &RawTarget, bytes: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(target.channel.clone());
    grpc.ready()
        .await
        .map_err(|err| Status::unavailable(err.to_string()))?;
    let path: PathAndQuery = target.path.parse().expect("a method's path");
    let answer = grpc
        .unary((target.credential)(bytes), path, RawBytes)
        .await?;
    Ok(answer.into_inner())
}

/// Each malformed message is refused (its code is printed, any code will do), and every service
/// answers a good call afterwards.
async fn malformed_bytes(f: &Fixture<'_>) -> Vec<String> {
    let mut wrong = Vec::new();
    for target in raw_targets(f) {
        for (what, bytes) in malformed(target.text_field, target.inside) {
            let named = format!("{} {} with {what}", target.process, target.path);
            match tokio::time::timeout(WAIT, raw_call(&target, bytes)).await {
                Ok(Err(status)) => println!("{named}: {:?} {}", status.code(), status.message()),
                Ok(Ok(answer)) => {
                    wrong.push(format!("{named}: answered OK ({} bytes)", answer.len()))
                }
                Err(_) => wrong.push(format!("{named}: no answer within {WAIT:?}")),
            }
        }
    }
    wrong.extend(run(still_answering(f)).await);
    wrong
}

fn still_answering<'a>(f: &'a Fixture<'a>) -> Vec<Case<'a>> {
    let (tier_id, order_no) = (f.tier.tier_id, f.awaiting.order_no.clone());
    let (key, bobs) = (
        Some(Key::OrderNo(order_no.clone())),
        f.confirmed.order_no.clone(),
    );
    vec![
        case("stock-svc still answers", Answered, "Floor", async move {
            f.catalog()
                .get_tier(stock_pb::GetTierRequest { tier_id })
                .await
        }),
        case("order-svc still answers", Answered, "ann", async move {
            let request = order_pb::GetOrderRequest { order_no };
            f.orders().get_order(auth::buyer("ann", request)).await
        }),
        case(
            "notify-svc still answers",
            Answered,
            "purchase_confirmed",
            async move {
                let request = notify_pb::ListNotificationsRequest { order_no: bobs };
                f.notifications()
                    .list_notifications(auth::buyer("bob", request))
                    .await
            },
        ),
        case(
            "orchestrator still answers",
            Answered,
            "WAITING",
            async move {
                f.sagas()
                    .get_saga(admin(saga_pb::GetSagaRequest { key }))
                    .await
            },
        ),
    ]
}
