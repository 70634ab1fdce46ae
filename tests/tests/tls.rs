//! TLS on the gRPC servers and channels, with certificates the test makes: a server with a
//! certificate and the CA of its clients takes only clients with a certificate of that CA
//! (mutual TLS), and a service reaches another over `https://` with its own certificate.

#![recursion_limit = "512"]

use std::path::{Path, PathBuf};

use e2e::stock::admin;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use ticket_platform::transport::TlsFiles;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA, and certificates it signed, written as PEM files into a folder of the test's own.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(e2e::unique("ticket-tls-"));
        std::fs::create_dir_all(&dir).expect("a folder for the certificates");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, pem: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, pem).expect("write a PEM");
        path.display().to_string()
    }

    /// A CA named `name`: `<name>.pem`.
    fn ca(&self, name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a key"))
            .expect("a CA");
        self.write(&format!("{name}.pem"), &ca.pem());
        ca
    }

    /// A certificate for `localhost` and 127.0.0.1 signed by `ca`: `<name>.pem`,
    /// `<name>.key`.
    fn leaf(&self, name: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, ca).expect("signed");
        (
            self.write(&format!("{name}.pem"), &cert.pem()),
            self.write(&format!("{name}.key"), &key.serialize_pem()),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path).expect("read a PEM")
}

/// A channel to `addr` over TLS trusting `ca`, presenting `identity` when given.
async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(ca)))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(read(cert), read(key)));
    }
    Channel::from_shared(format!("https://{addr}"))
        .expect("address")
        .tls_config(tls)?
        .connect()
        .await
}

async fn list_shows(channel: Channel) -> Result<pb::ListShowsResponse, tonic::Status> {
    CatalogServiceClient::new(channel)
        .list_shows(pb::ListShowsRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn mutual_tls_takes_only_clients_of_its_ca_and_services_reach_each_other_over_it() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let stranger = pki.ca("stranger");
    let (server_cert, server_key) = pki.leaf("stock-svc", &ca);
    let (client_cert, client_key) = pki.leaf("order-svc", &ca);
    let (stranger_cert, stranger_key) = pki.leaf("stranger-client", &stranger);

    // stock-svc serves TLS and asks every client for a certificate of the CA.
    let mut service = e2e::service_config(
        "stock-svc",
        e2e::fresh_database_config("t_stock_").await,
        e2e::messaging_config(3),
    );
    service.grpc.tls = TlsFiles {
        cert_file: server_cert,
        key_file: server_key,
        client_ca_file: pki.path("ca.pem").display().to_string(),
        ca_file: String::new(),
    };
    let config = e2e::stock_config(service);
    let key_prefix = config.redis_key_prefix.clone();
    let stock = stock_svc::Application::build(config)
        .await
        .expect("stock-svc starts with TLS");
    let addr = stock.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(stock.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    // Plaintext, no client certificate, a certificate of another CA: refused.
    let plaintext = Channel::from_shared(format!("http://{addr}"))
        .expect("address")
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        assert!(list_shows(channel).await.is_err(), "plaintext was served");
    }
    let ca_pem = pki.path("ca.pem");
    for identity in [None, Some((stranger_cert.as_str(), stranger_key.as_str()))] {
        let refused = match tls_channel(addr, &ca_pem, identity).await {
            Ok(channel) => list_shows(channel).await.err().map(|s| s.code()),
            Err(_) => Some(tonic::Code::Unavailable),
        };
        assert!(
            refused.is_some(),
            "a client without a certificate of the CA was served"
        );
    }
    // A client of the CA is served, an admin call included.
    let channel = tls_channel(addr, &ca_pem, Some((&client_cert, &client_key)))
        .await
        .expect("a TLS connection");
    list_shows(channel.clone())
        .await
        .expect("served over mutual TLS");
    let mut catalog = CatalogServiceClient::new(channel);
    let show = catalog
        .create_show(admin(pb::CreateShowRequest {
            title: "Gala".into(),
            venue: "Hall".into(),
        }))
        .await
        .expect("a show")
        .into_inner();

    // order-svc reaches the catalog at https:// with its own certificate; without one it
    // cannot, and says the catalog is unavailable.
    let session = catalog
        .create_session(admin(pb::CreateSessionRequest {
            show_id: show.show_id,
            starts_at: e2e::stock::at(7_200),
            sale_opens_at: e2e::stock::at(-60),
            sale_closes_at: e2e::stock::at(3_600),
            per_user_limit: 4,
        }))
        .await
        .expect("a session")
        .into_inner();
    let tier = catalog
        .create_tier(admin(pb::CreateTierRequest {
            session_id: session.session_id,
            name: "Floor".into(),
            price_cents: 12_500,
            total: 10,
            per_user_limit: 0,
        }))
        .await
        .expect("a tier")
        .into_inner()
        .tier_id;
    for (identity, reached) in [(true, true), (false, false)] {
        let database = e2e::fresh_database_config("t_order_").await;
        let mut service = e2e::service_config("order-svc", database, e2e::messaging_config(3));
        service.grpc.tls = TlsFiles {
            ca_file: ca_pem.display().to_string(),
            ..TlsFiles::default()
        };
        if identity {
            service.grpc.tls.cert_file = client_cert.clone();
            service.grpc.tls.key_file = client_key.clone();
        }
        let mut config = e2e::order_config(
            service,
            &format!("https://localhost:{}", addr.port()),
            &key_prefix,
            None,
        );
        config.redis_key_prefix = key_prefix.clone();
        let orders = order_svc::Application::build(config)
            .await
            .expect("order-svc starts");
        let orders_addr = orders.local_addr();
        let (stop_orders, orders_stopped) = tokio::sync::oneshot::channel::<()>();
        let serving_orders = tokio::spawn(orders.run_until_stopped(async move {
            let _ = orders_stopped.await;
        }));
        // With its certificate order-svc serves TLS too (and asks no client for one).
        let channel = if identity {
            tls_channel(orders_addr, &ca_pem, None)
                .await
                .expect("TLS to order-svc")
        } else {
            Channel::from_shared(format!("http://{orders_addr}"))
                .expect("address")
                .connect()
                .await
                .expect("plaintext to order-svc")
        };
        let created =
            ticket_proto::order::v1::order_service_client::OrderServiceClient::new(channel)
                .create_order(order_pb::CreateOrderRequest {
                    user_id: "ann".into(),
                    tier_id: tier,
                    quantity: 1,
                    request_id: format!("tls-{identity}"),
                    wait_for_decision: false,
                    contact: None,
                })
                .await;
        match (reached, created) {
            (true, Ok(order)) => assert_eq!(order.into_inner().tier_id, tier),
            (false, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            }
            (_, other) => panic!("identity {identity}: {other:?}"),
        }
        let _ = stop_orders.send(());
        serving_orders
            .await
            .expect("order-svc's task")
            .expect("order-svc stops cleanly");
    }
    let _ = stop.send(());
    serving
        .await
        .expect("stock-svc's task")
        .expect("stock-svc stops cleanly");
}
