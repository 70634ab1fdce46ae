//! The access model's rules, without a server.

use super::*;

fn access() -> Access {
    let config = AccessConfig {
        dev: false,
        admin_token: "admin-token-0123456789".into(),
        service_token: "service-token-0123456789".into(),
    };
    let buyers = BuyerTokens {
        jwt_secret: "a-secret-of-at-least-thirty-two-bytes".into(),
        ..BuyerTokens::default()
    };
    Access::with_buyers(&config, &buyers, Some("payment-token-0123456789")).expect("keys")
}

fn with(token: &str) -> tonic::Request<()> {
    let mut request = tonic::Request::new(());
    request
        .metadata_mut()
        .insert("authorization", token.parse().expect("ascii"));
    request
}

fn jwt(secret: &str, sub: &str, exp_from_now: i64) -> String {
    sign_buyer_token(secret, sub, exp_from_now).expect("encode")
}

#[test]
fn each_credential_opens_its_own_calls() {
    let access = access();
    let admin = with("Bearer admin-token-0123456789");
    let service = with("Bearer service-token-0123456789");
    let payment = with("Bearer payment-token-0123456789");
    let buyer = with(&format!(
        "Bearer {}",
        jwt("a-secret-of-at-least-thirty-two-bytes", "u1", 600)
    ));
    assert!(access.admin(&admin).is_ok());
    assert!(access.service(&service).is_ok());
    assert!(access.payment(&payment).is_ok());
    assert_eq!(
        access.buyer(&buyer).expect("buyer"),
        Actor::Buyer("u1".into())
    );
    assert_eq!(access.buyer(&admin).expect("operator"), Actor::Anyone);
    for (request, call) in [
        (&service, "admin"),
        (&buyer, "admin"),
        (&payment, "admin"),
        (&admin, "service"),
        (&buyer, "service"),
        (&buyer, "payment"),
        (&service, "buyer"),
    ] {
        let code = match call {
            "admin" => access.admin(request).err(),
            "service" => access.service(request).err(),
            "payment" => access.payment(request).err(),
            _ => access.buyer(request).err(),
        }
        .map(|status| status.code());
        assert_eq!(code, Some(tonic::Code::PermissionDenied), "{call}");
    }
}

#[test]
fn missing_wrong_or_unverified_credentials_are_unauthenticated() {
    let access = access();
    let expired = jwt("a-secret-of-at-least-thirty-two-bytes", "u1", -600);
    let forged = jwt("another-secret-of-thirty-two-bytes!!", "u1", 600);
    let nobody = tonic::Request::new(());
    for request in [
        &nobody,
        &with("Bearer admin-token-012345678"),
        &with("Bearer admin-token-01234567890"),
        &with("Basic admin-token-0123456789"),
        &with("Bearer "),
        &with(&format!("Bearer {expired}")),
        &with(&format!("Bearer {forged}")),
        &with("Bearer a.b.c"),
    ] {
        for status in [
            access.admin(request).err(),
            access.service(request).err(),
            access.payment(request).err(),
            access.buyer(request).err(),
        ] {
            assert_eq!(
                status.map(|status| status.code()),
                Some(tonic::Code::Unauthenticated)
            );
        }
    }
}

#[test]
fn a_buyer_names_only_themself() {
    let buyer = Actor::Buyer("u1".into());
    assert_eq!(buyer.user_id("").expect("own"), "u1");
    assert_eq!(buyer.user_id("u1").expect("own"), "u1");
    assert_eq!(
        buyer.user_id("u2").map_err(|status| status.code()),
        Err(tonic::Code::PermissionDenied)
    );
    assert!(buyer.may_see("u1") && !buyer.may_see("u2"));
    assert!(Actor::Anyone.may_see("u2"));
}

#[test]
fn without_tokens_a_service_does_not_start_outside_dev() {
    let mut source = ConfigSource::from_pairs("T", []);
    let config = AccessConfig::load(&mut source);
    assert!(!config.dev);
    let errors = source.finish().expect_err("no tokens").to_string();
    assert!(errors.contains("T_ADMIN_TOKEN"), "{errors}");
    assert!(errors.contains("T_SERVICE_TOKEN"), "{errors}");
    assert!(errors.contains("T_PROFILE = dev"), "{errors}");

    let mut source = ConfigSource::from_pairs("T", [("T_PROFILE".into(), "dev".into())]);
    let config = AccessConfig::load(&mut source);
    assert!(source.finish().is_ok());
    assert_eq!(config.admin_token, DEV_ADMIN_TOKEN);

    let mut source = ConfigSource::from_pairs(
        "T",
        [
            ("T_ADMIN_TOKEN".into(), "same-token-0123456789".into()),
            ("T_SERVICE_TOKEN".into(), "same-token-0123456789".into()),
        ],
    );
    AccessConfig::load(&mut source);
    let errors = source.finish().expect_err("same tokens").to_string();
    assert!(errors.contains("must differ"), "{errors}");
}

#[test]
fn dev_takes_calls_without_a_credential_as_their_request_says() {
    let config = AccessConfig {
        dev: true,
        admin_token: DEV_ADMIN_TOKEN.into(),
        service_token: DEV_SERVICE_TOKEN.into(),
    };
    let buyers = BuyerTokens {
        jwt_secret: DEV_BUYER_SECRET.into(),
        ..BuyerTokens::default()
    };
    let access = Access::with_buyers(&config, &buyers, Some(DEV_PAYMENT_TOKEN)).expect("keys");
    let nobody = tonic::Request::new(());
    assert_eq!(access.buyer(&nobody).expect("dev"), Actor::Anyone);
    assert!(access.payment(&nobody).is_ok());
    assert_eq!(
        access.admin(&nobody).map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        access.service(&nobody).map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
    let wrong = with("Bearer not-a-token-of-ours");
    assert_eq!(
        access.buyer(&wrong).map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
}

#[test]
fn the_dev_defaults_are_refused_outside_dev() {
    let pairs = [
        ("T_ADMIN_TOKEN", DEV_ADMIN_TOKEN),
        ("T_SERVICE_TOKEN", DEV_SERVICE_TOKEN),
        ("T_PAYMENTS__TOKEN", DEV_PAYMENT_TOKEN),
        ("T_BUYERS__JWT_SECRET", DEV_BUYER_SECRET),
    ];
    let mut source =
        ConfigSource::from_pairs("T", pairs.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let config = AccessConfig::load(&mut source);
    token(&mut source, config.dev, "payments.token", DEV_PAYMENT_TOKEN);
    BuyerTokens::load(&mut source, config.dev);
    let errors = source.finish().expect_err("dev values").to_string();
    for key in [
        "T_ADMIN_TOKEN",
        "T_SERVICE_TOKEN",
        "T_PAYMENTS__TOKEN",
        "T_BUYERS__JWT_SECRET",
    ] {
        assert!(
            errors.contains(&format!("{key}): is the development profile's default")),
            "{key}: {errors}"
        );
    }
}

#[test]
fn an_issuer_or_audience_set_must_be_the_tokens() {
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
        iss: &'a str,
        aud: &'a str,
    }
    let secret = "a-secret-of-at-least-thirty-two-bytes";
    let signed = |iss: &str, aud: &str| {
        let claims = Claims {
            sub: "u1",
            exp: chrono::Utc::now().timestamp() + 600,
            iss,
            aud,
        };
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode");
        with(&format!("Bearer {token}"))
    };
    let config = AccessConfig {
        dev: false,
        admin_token: "admin-token-0123456789".into(),
        service_token: "service-token-0123456789".into(),
    };
    let buyers = BuyerTokens {
        jwt_secret: secret.into(),
        jwt_issuer: "https://gateway.example".into(),
        jwt_audience: "tickets".into(),
        ..BuyerTokens::default()
    };
    let access = Access::with_buyers(&config, &buyers, None).expect("keys");
    let good = signed("https://gateway.example", "tickets");
    assert_eq!(
        access.buyer(&good).expect("verified"),
        Actor::Buyer("u1".into())
    );
    for bad in [
        signed("https://elsewhere.example", "tickets"),
        signed("https://gateway.example", "another-audience"),
    ] {
        assert_eq!(
            access.buyer(&bad).map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
    }
}

#[test]
fn rs256_tokens_verify_with_the_public_key_file() {
    // A key pair made for this test only (openssl genpkey -algorithm RSA).
    let private = include_str!("test_rsa_key.pem");
    let public = std::env::temp_dir().join(format!("ticket-rs256-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&public, include_str!("test_rsa_pub.pem")).expect("write the public key");
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        sub: &'a str,
        exp: i64,
    }
    let claims = Claims {
        sub: "u7",
        exp: chrono::Utc::now().timestamp() + 600,
    };
    let rs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).expect("an RSA key"),
    )
    .expect("encode");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"a-secret-of-at-least-thirty-two-bytes"),
    )
    .expect("encode");
    let config = AccessConfig {
        dev: false,
        admin_token: "admin-token-0123456789".into(),
        service_token: "service-token-0123456789".into(),
    };
    let buyers = BuyerTokens {
        jwt_public_key_file: public.display().to_string(),
        ..BuyerTokens::default()
    };
    let access = Access::with_buyers(&config, &buyers, None).expect("the public key");
    let _ = std::fs::remove_file(&public);
    assert_eq!(
        access
            .buyer(&with(&format!("Bearer {rs256}")))
            .expect("verified"),
        Actor::Buyer("u7".into())
    );
    // An HS256 token is not taken where RS256 is configured.
    assert_eq!(
        access
            .buyer(&with(&format!("Bearer {hs256}")))
            .map_err(|s| s.code()),
        Err(tonic::Code::Unauthenticated)
    );
}
