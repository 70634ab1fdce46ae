//! The tests' credentials: the admin token is [`crate::stock::TOKEN`]; here the service and
//! payment tokens, the buyers' JWT secret, and requests that carry each.

use ticket_platform::auth::AccessConfig;
use tonic::Request;

pub const SERVICE_TOKEN: &str = "service-test-token";
pub const PAYMENT_TOKEN: &str = "payment-test-token";
/// The HS256 secret the tests' gateway signs buyer tokens with.
pub const BUYER_SECRET: &str = "buyer-test-secret-of-thirty-two-bytes";

/// The tests' services run the `dev` profile (a call without a credential is taken as its
/// request says) with the tests' own tokens; [`strict`] turns `dev` off.
pub fn access() -> AccessConfig {
    AccessConfig {
        dev: true,
        admin_token: crate::stock::TOKEN.into(),
        service_token: SERVICE_TOKEN.into(),
    }
}

/// [`access`] without `dev`: every call needs its credential.
pub fn strict() -> AccessConfig {
    AccessConfig {
        dev: false,
        ..access()
    }
}

/// The tests' buyer-token settings.
pub fn buyer_tokens() -> ticket_platform::auth::BuyerTokens {
    ticket_platform::auth::BuyerTokens {
        jwt_secret: BUYER_SECRET.into(),
        ..Default::default()
    }
}

/// A buyer token for `user_id`, valid for an hour, signed with `secret`.
pub fn buyer_token_signed(user_id: &str, secret: &str, valid_for_secs: i64) -> String {
    ticket_platform::auth::sign_buyer_token(secret, user_id, valid_for_secs).expect("a JWT")
}

/// A buyer token for `user_id`, as the tests' gateway issues it.
pub fn buyer_token(user_id: &str) -> String {
    buyer_token_signed(user_id, BUYER_SECRET, 3600)
}

/// `message` with `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    request
}

/// A buyer's call.
pub fn buyer<T>(user_id: &str, message: T) -> Request<T> {
    bearer(&buyer_token(user_id), message)
}

/// A service's call.
pub fn service<T>(message: T) -> Request<T> {
    bearer(SERVICE_TOKEN, message)
}

/// The payment callback's call.
pub fn payment<T>(message: T) -> Request<T> {
    bearer(PAYMENT_TOKEN, message)
}
