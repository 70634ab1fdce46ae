//! Every call that needs a credential, of every service, with each credential: the right one
//! passes the access check (whatever the empty request then gets), none is `UNAUTHENTICATED`,
//! any other is `PERMISSION_DENIED`. The system runs the tests' dev profile, where a presented
//! credential is checked as in production and only buyer calls and `PayOrder` take a call
//! without one (`access.rs` runs production).

#![recursion_limit = "512"]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use e2e::auth::{self, bearer};
use e2e::system::System;
use ticket_proto::notify::v1 as notify_pb;
use ticket_proto::notify::v1::notification_service_client::NotificationServiceClient;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::saga::v1 as saga_pb;
use ticket_proto::saga::v1::participant_client::ParticipantClient;
use ticket_proto::saga::v1::saga_events_client::SagaEventsClient;
use ticket_proto::stock::v1 as stock_pb;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    Nothing,
    Admin,
    Service,
    Payment,
    Buyer,
}

const ALL: [Credential; 5] = [
    Credential::Nothing,
    Credential::Admin,
    Credential::Service,
    Credential::Payment,
    Credential::Buyer,
];

fn with<T>(credential: Credential, message: T) -> tonic::Request<T> {
    match credential {
        Credential::Nothing => tonic::Request::new(message),
        Credential::Admin => e2e::stock::admin(message),
        Credential::Service => auth::service(message),
        Credential::Payment => auth::payment(message),
        Credential::Buyer => bearer(&auth::buyer_token("ann"), message),
    }
}

type Answer = Pin<Box<dyn Future<Output = Code>>>;

/// A call, made with a credential; its answer's code.
struct Call {
    name: &'static str,
    opens: Credential,
    make: Box<dyn Fn(Credential) -> Answer>,
}

fn code<T>(answer: Result<tonic::Response<T>, tonic::Status>) -> Code {
    answer.map_or_else(|status| status.code(), |_| Code::Ok)
}

macro_rules! call {
    ($name:literal, $opens:ident, $channel:expr, $client:path, $method:ident, $request:expr) => {{
        let channel: Channel = $channel.clone();
        Call {
            name: $name,
            opens: Credential::$opens,
            make: Box::new(move |credential| {
                let mut client = <$client>::new(channel.clone());
                Box::pin(async move { code(client.$method(with(credential, $request)).await) })
            }),
        }
    }};
}

/// What `credential` gets from a call that `opens` takes: through, or refused as whom.
/// Payment and buyer tokens are known to order-svc and notify-svc only: elsewhere the payment
/// token is no token, and a buyer's JWT a buyer's all the same.
fn expected(opens: Credential, credential: Credential, knows_payment: bool) -> Option<Code> {
    match credential {
        c if c == opens => None,
        Credential::Nothing => Some(Code::Unauthenticated),
        Credential::Payment if !knows_payment => Some(Code::Unauthenticated),
        _ => Some(Code::PermissionDenied),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_guarded_call_takes_its_own_credential_only() {
    use ticket_proto::order::v1::contact_service_client::ContactServiceClient;
    use ticket_proto::order::v1::order_service_client::OrderServiceClient;
    use ticket_proto::saga::v1::saga_admin_client::SagaAdminClient;
    use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
    use ticket_proto::stock::v1::stock_service_client::StockServiceClient;

    let system = System::start(
        e2e::saga::settings(Duration::from_secs(300)),
        orchestrator::dispatch::Transport::RocketMq,
    )
    .await;
    let stock = system.stock().channel.clone();
    let order = system.order.channel.clone();
    let notify = system.notify.channel.clone();
    let orch = system.orchestrator.channel.clone();
    let calls = vec![
        call!(
            "CreateShow",
            Admin,
            stock,
            CatalogServiceClient<Channel>,
            create_show,
            stock_pb::CreateShowRequest::default()
        ),
        call!(
            "CreateSession",
            Admin,
            stock,
            CatalogServiceClient<Channel>,
            create_session,
            stock_pb::CreateSessionRequest::default()
        ),
        call!(
            "CreateTier",
            Admin,
            stock,
            CatalogServiceClient<Channel>,
            create_tier,
            stock_pb::CreateTierRequest::default()
        ),
        call!(
            "Prededuct",
            Admin,
            stock,
            StockServiceClient<Channel>,
            prededuct,
            stock_pb::PredeductRequest::default()
        ),
        call!(
            "Confirm",
            Admin,
            stock,
            StockServiceClient<Channel>,
            confirm,
            stock_pb::ConfirmRequest::default()
        ),
        call!(
            "Rollback",
            Admin,
            stock,
            StockServiceClient<Channel>,
            rollback,
            stock_pb::RollbackRequest::default()
        ),
        call!(
            "Reconcile",
            Admin,
            stock,
            StockServiceClient<Channel>,
            reconcile,
            stock_pb::ReconcileRequest::default()
        ),
        call!(
            "stock Execute",
            Service,
            stock,
            ParticipantClient<Channel>,
            execute,
            saga_pb::Command::default()
        ),
        call!(
            "PayOrder",
            Payment,
            order,
            OrderServiceClient<Channel>,
            pay_order,
            order_pb::PayOrderRequest::default()
        ),
        call!(
            "GetContact",
            Service,
            order,
            ContactServiceClient<Channel>,
            get_contact,
            order_pb::GetContactRequest::default()
        ),
        call!(
            "order Execute",
            Service,
            order,
            ParticipantClient<Channel>,
            execute,
            saga_pb::Command::default()
        ),
        call!(
            "RetryNotification",
            Admin,
            notify,
            NotificationServiceClient<Channel>,
            retry_notification,
            notify_pb::RetryNotificationRequest::default()
        ),
        call!(
            "ListFailedNotifications",
            Admin,
            notify,
            NotificationServiceClient<Channel>,
            list_failed_notifications,
            notify_pb::ListFailedNotificationsRequest::default()
        ),
        call!(
            "notify Execute",
            Service,
            notify,
            ParticipantClient<Channel>,
            execute,
            saga_pb::Command::default()
        ),
        call!(
            "ListSagas",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            list_sagas,
            saga_pb::ListSagasRequest::default()
        ),
        call!(
            "GetSaga",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            get_saga,
            saga_pb::GetSagaRequest::default()
        ),
        call!(
            "RetrySaga",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            retry_saga,
            saga_pb::SagaRef::default()
        ),
        call!(
            "CompensateSaga",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            compensate_saga,
            saga_pb::SagaRef::default()
        ),
        call!(
            "SkipStep",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            skip_step,
            saga_pb::SagaRef::default()
        ),
        call!(
            "ListDeadLetters",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            list_dead_letters,
            saga_pb::ListDeadLettersRequest::default()
        ),
        call!(
            "RedriveDeadLetter",
            Admin,
            orch,
            SagaAdminClient<Channel>,
            redrive_dead_letter,
            saga_pb::RedriveDeadLetterRequest::default()
        ),
        call!(
            "Deliver",
            Service,
            orch,
            SagaEventsClient<Channel>,
            deliver,
            saga_pb::OrderEvent::default()
        ),
    ];
    let mut wrong = Vec::new();
    for call in &calls {
        // order-svc knows the payment token; to the others it is no token of theirs.
        let knows_payment = ["PayOrder", "GetContact", "order Execute"].contains(&call.name);
        for credential in ALL {
            // The dev profile takes a PayOrder without a credential as the payment callback's.
            if call.name == "PayOrder" && credential == Credential::Nothing {
                continue;
            }
            let got = (call.make)(credential).await;
            let ok = match expected(call.opens, credential, knows_payment) {
                None => !matches!(got, Code::Unauthenticated | Code::PermissionDenied),
                Some(code) => got == code,
            };
            if !ok {
                wrong.push(format!("{} with {credential:?}: {got:?}", call.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answer(s) wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    system.stop(&[]).await;
}
