//! Every service starts, serves health and reflection (what `grpcurl -plaintext HOST:PORT list`
//! uses), and on stop turns health NOT_SERVING before it exits.

#![recursion_limit = "512"]

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{fresh_database_config, messaging_config};
use futures::StreamExt;
use ticket_platform::service::ServiceConfig;
use tokio::sync::oneshot;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn service_config(name: &str) -> ServiceConfig {
    e2e::service_config(
        name,
        fresh_database_config("t_svc_").await,
        messaging_config(3),
    )
}

async fn channel(addr: SocketAddr) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await
}

async fn list_services(addr: SocketAddr) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(addr).await.expect("connect"));
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection call")
        .into_inner();
    let response = responses
        .next()
        .await
        .expect("one response")
        .expect("ok response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            names
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn health(addr: SocketAddr, service: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = channel(addr)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = HealthClient::new(channel);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Starts a service, checks what reflection lists and that health is SERVING, then stops it and
/// checks health turned NOT_SERVING while it drained, and that it exited cleanly.
macro_rules! check_service {
    ($name:literal, $krate:ident, $config:expr) => {{
        let config = $config(service_config($name).await);
        let app = $krate::Application::build(config)
            .await
            .expect(concat!($name, " starts"));
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let (drain_started, drain) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
            let _ = drain_started.send(());
        }));

        let listed = list_services(addr).await;
        let mut expected: Vec<String> = $krate::SERVICES.iter().map(|s| s.to_string()).collect();
        expected.push("grpc.health.v1.Health".into());
        for name in &expected {
            assert!(
                listed.contains(name),
                "{} lists {listed:?}, missing {name}",
                $name
            );
        }
        for name in &listed {
            assert!(
                expected.contains(name) || name.starts_with("grpc.reflection."),
                "{} lists a service it does not serve: {name}",
                $name
            );
        }
        assert_eq!(
            health(addr, "").await.expect("health"),
            ServingStatus::Serving
        );
        for service in $krate::SERVICES {
            assert_eq!(
                health(addr, service).await.expect("health"),
                ServingStatus::Serving
            );
        }

        // Hold a health stream open so the server is still draining when we look.
        let mut watcher = HealthClient::new(channel(addr).await.expect("connect"));
        let mut watch = watcher
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch")
            .into_inner();
        assert_eq!(
            watch.next().await.expect("first").expect("ok").status(),
            ServingStatus::Serving
        );
        stop.send(()).expect("server running");
        drain.await.expect("shutdown began");
        let status = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("status change");
        assert_eq!(
            status.expect("an update").expect("ok").status(),
            ServingStatus::NotServing
        );
        drop(watch);
        drop(watcher);
        let exit = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("stops in time");
        exit.expect("task").expect(concat!($name, " exits cleanly"));
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_svc_serves_health_and_reflection_and_stops_cleanly() {
    check_service!("order-svc", order_svc, |service| e2e::order_config(
        service,
        "http://127.0.0.1:1",
        "stock",
        None
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_svc_serves_health_and_reflection_and_stops_cleanly() {
    check_service!("stock-svc", stock_svc, e2e::stock_config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_serves_health_and_reflection_and_stops_cleanly() {
    check_service!("orchestrator", orchestrator, |service| {
        e2e::orchestrator_config(
            service,
            orchestrator::dispatch::ParticipantAddrs {
                stock: "http://127.0.0.1:1".into(),
                order: "http://127.0.0.1:1".into(),
                notify: "http://127.0.0.1:1".into(),
            },
            orchestrator::saga::purchase::SagaSettings::default(),
            orchestrator::dispatch::Transport::RocketMq,
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_svc_serves_health_and_reflection_and_stops_cleanly() {
    check_service!("notify-svc", notify_svc, notify_svc::Config::with_service);
}
