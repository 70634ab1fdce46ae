//! Who may call what. Every credential is a bearer token in `authorization: Bearer <token>`:
//!
//! - an operator: the admin token (catalog and stock writes, saga and dead-letter operations,
//!   notification retries);
//! - a service: the service token (`Participant.Execute`, `SagaEvents.Deliver`,
//!   `ContactService.GetContact`), which opens no admin call;
//! - the payment provider's callback: the payment token (`PayOrder`);
//! - a buyer: a JWT (HS256 with a shared secret, or RS256 with a public key) that a gateway
//!   issued, whose `sub` is the buyer's user id.
//!
//! Tokens are compared in constant time. A missing or unknown credential is `UNAUTHENTICATED`;
//! a known one on a call it does not open is `PERMISSION_DENIED`.
//!
//! The `dev` profile (`profile = dev`) has development defaults for every token and secret, and
//! takes a call that presents no credential at all as its request says: a buyer call as the
//! request's `user_id`, `PayOrder` as the payment callback. A presented credential is always
//! checked. No other profile has defaults: a service without its tokens does not start.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::ConfigSource;

/// The development defaults, used only under `profile = dev`.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
pub const DEV_SERVICE_TOKEN: &str = "dev-service-token";
pub const DEV_PAYMENT_TOKEN: &str = "dev-payment-token";
pub const DEV_BUYER_SECRET: &str = "dev-buyer-jwt-secret-not-for-production";

/// A token shorter than this is refused at start.
const MIN_TOKEN_LEN: usize = 16;

/// The longest user id a buyer token may name (as `CreateOrder` takes).
const MAX_USER_ID_LEN: usize = 64;

/// The settings every service reads: the profile, the admin token and the service token.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// `profile = dev`: development defaults, and calls without a credential taken as their
    /// request says (see the module's documentation).
    pub dev: bool,
    pub admin_token: String,
    pub service_token: String,
}

impl AccessConfig {
    pub fn load(source: &mut ConfigSource) -> Self {
        let profile = source.string("profile", "production");
        let dev = match profile.as_str() {
            "dev" => true,
            "production" => false,
            other => {
                source.invalid(
                    "profile",
                    format!("`{other}` is not a profile: `production` (the default) or `dev`"),
                );
                false
            }
        };
        let admin_token = token(source, dev, "admin_token", DEV_ADMIN_TOKEN);
        let service_token = token(source, dev, "service_token", DEV_SERVICE_TOKEN);
        if !admin_token.is_empty() && admin_token == service_token {
            source.invalid(
                "service_token",
                "must differ from the admin token: a service would hold the operators' keys",
            );
        }
        Self {
            dev,
            admin_token,
            service_token,
        }
    }
}

/// A required token: its development default under `dev`; without one, a start error that says
/// how to set it.
pub fn token(source: &mut ConfigSource, dev: bool, key: &str, dev_default: &str) -> String {
    let value = source.string(key, if dev { dev_default } else { "" });
    let value = value.trim().to_owned();
    if value.is_empty() {
        source.invalid(
            key,
            format!(
                "is not set: give a random token of {MIN_TOKEN_LEN}+ characters (`openssl rand -hex 32`), \
                 or run with {} = dev for the development defaults",
                source.env_name("profile")
            ),
        );
    } else if !dev && value == dev_default {
        source.invalid(
            key,
            "is the development profile's default, which anyone can read: give a token of your own",
        );
    } else if value.len() < MIN_TOKEN_LEN && !dev {
        source.invalid(key, format!("must be at least {MIN_TOKEN_LEN} characters"));
    }
    value
}

/// How buyer tokens are verified (`buyers.*`; order-svc and notify-svc).
#[derive(Clone, Debug, Default)]
pub struct BuyerTokens {
    /// HS256 shared secret (at least 32 bytes).
    pub jwt_secret: String,
    /// Or a PEM file with the RS256 public key.
    pub jwt_public_key_file: String,
    /// When set, the token's `iss` must be this.
    pub jwt_issuer: String,
    /// When set, the token's `aud` must include this.
    pub jwt_audience: String,
}

impl BuyerTokens {
    pub fn load(source: &mut ConfigSource, dev: bool) -> Self {
        let jwt_secret =
            source.string("buyers.jwt_secret", if dev { DEV_BUYER_SECRET } else { "" });
        let jwt_public_key_file = source.string("buyers.jwt_public_key_file", "");
        let jwt_issuer = source.string("buyers.jwt_issuer", "");
        let jwt_audience = source.string("buyers.jwt_audience", "");
        let tokens = Self {
            jwt_secret,
            jwt_public_key_file,
            jwt_issuer,
            jwt_audience,
        };
        if !dev && tokens.jwt_secret == DEV_BUYER_SECRET {
            source.invalid(
                "buyers.jwt_secret",
                "is the development profile's default, which anyone can read: give a secret of your own",
            );
        } else if let Err(problem) = tokens.verifier() {
            let key = if tokens.jwt_public_key_file.is_empty() {
                "buyers.jwt_secret"
            } else {
                "buyers.jwt_public_key_file"
            };
            source.invalid(key, problem);
        }
        tokens
    }

    fn verifier(&self) -> Result<BuyerVerifier, String> {
        let (key, algorithm) = match (
            self.jwt_secret.is_empty(),
            self.jwt_public_key_file.is_empty(),
        ) {
            (true, true) => {
                return Err(
                    "buyer tokens need a key: set buyers.jwt_secret (HS256, 32+ bytes) \
                     or buyers.jwt_public_key_file (RS256, PEM)"
                        .into(),
                );
            }
            (false, false) => {
                return Err(
                    "set one of buyers.jwt_secret and buyers.jwt_public_key_file, not both".into(),
                );
            }
            (false, true) if self.jwt_secret.len() < 32 => {
                return Err("an HS256 secret must be at least 32 bytes".into());
            }
            (false, true) => (
                DecodingKey::from_secret(self.jwt_secret.as_bytes()),
                Algorithm::HS256,
            ),
            (true, false) => {
                let pem = std::fs::read(&self.jwt_public_key_file)
                    .map_err(|err| format!("{}: {err}", self.jwt_public_key_file))?;
                let key = DecodingKey::from_rsa_pem(&pem).map_err(|err| {
                    format!("{}: not an RSA public key: {err}", self.jwt_public_key_file)
                })?;
                (key, Algorithm::RS256)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        if !self.jwt_issuer.is_empty() {
            validation.set_issuer(&[&self.jwt_issuer]);
        }
        if self.jwt_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&self.jwt_audience]);
        }
        Ok(BuyerVerifier { key, validation })
    }
}

struct BuyerVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

/// A buyer token for `user_id`, signed with the HS256 `secret` as a gateway would issue it,
/// expiring `expires_in_secs` from now (negative: already expired). `ticketctl token`, the
/// demo's and the bench's buyers and the tests sign with it.
pub fn sign_buyer_token(
    secret: &str,
    user_id: &str,
    expires_in_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    #[derive(serde::Serialize)]
    struct Issued<'a> {
        sub: &'a str,
        iat: i64,
        exp: i64,
    }
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &Issued {
            sub: user_id,
            iat: now,
            exp: now.saturating_add(expires_in_secs),
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// One secret token, kept and compared as its SHA-256 digest: the comparison takes the same
/// time whatever was presented, its length included.
#[derive(Clone)]
struct Secret([u8; 32]);

impl Secret {
    fn new(token: &str) -> Option<Self> {
        (!token.is_empty()).then(|| Self(digest(token.as_bytes())))
    }

    fn matches(this: Option<&Self>, presented: &[u8; 32]) -> bool {
        this.is_some_and(|secret| bool::from(secret.0.ct_eq(presented)))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// Who made a call, from its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Service,
    Payment,
    Buyer(String),
    /// A buyer token where buyer tokens are not verified (stock-svc, the orchestrator): no
    /// call of theirs is a buyer's.
    BuyerElsewhere,
    /// No credential presented.
    Nobody,
}

impl Caller {
    fn what(&self) -> &'static str {
        match self {
            Self::Operator => "the admin token",
            Self::Service => "the service token",
            Self::Payment => "the payment token",
            Self::Buyer(_) | Self::BuyerElsewhere => "a buyer token",
            Self::Nobody => "no credential",
        }
    }
}

/// On whose behalf a buyer call acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// A verified buyer: reaches only their own orders.
    Buyer(String),
    /// An operator, or a call without a credential under `dev`: reaches every order.
    Anyone,
}

impl Actor {
    /// Whether this actor may see an order (or notification) of `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        match self {
            Self::Buyer(user) => user == owner,
            Self::Anyone => true,
        }
    }

    /// The buyer this actor acts for, when the request names `claimed` (empty: not named).
    #[allow(clippy::result_large_err)]
    pub fn user_id(&self, claimed: &str) -> Result<String, Status> {
        match self {
            Self::Buyer(user) if claimed.is_empty() || claimed == user => Ok(user.clone()),
            Self::Buyer(_) => Err(Status::permission_denied(
                "user_id is not the buyer of the token: leave it empty or give your own",
            )),
            Self::Anyone if claimed.is_empty() => Err(Status::invalid_argument(
                "user_id is required (or send a buyer token)",
            )),
            Self::Anyone => Ok(claimed.to_owned()),
        }
    }
}

/// The credentials a service accepts; cheap to clone.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    dev: bool,
    admin: Option<Secret>,
    service: Option<Secret>,
    payment: Option<Secret>,
    buyers: Option<BuyerVerifier>,
}

impl Access {
    /// Admin and service tokens only (stock-svc, the orchestrator).
    pub fn new(config: &AccessConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                dev: config.dev,
                admin: Secret::new(&config.admin_token),
                service: Secret::new(&config.service_token),
                payment: None,
                buyers: None,
            }),
        }
    }

    /// Also buyer tokens, and the payment callback's token when given (order-svc, notify-svc).
    /// Fails only on a key that [`BuyerTokens::load`] would have reported.
    pub fn with_buyers(
        config: &AccessConfig,
        buyers: &BuyerTokens,
        payment_token: Option<&str>,
    ) -> Result<Self, String> {
        let verifier = buyers.verifier()?;
        Ok(Self {
            inner: Arc::new(Inner {
                dev: config.dev,
                admin: Secret::new(&config.admin_token),
                service: Secret::new(&config.service_token),
                payment: payment_token.and_then(Secret::new),
                buyers: Some(verifier),
            }),
        })
    }

    /// Who presented the call's credential; `UNAUTHENTICATED` for a malformed header, an
    /// unknown token or a buyer token that does not verify.
    #[allow(clippy::result_large_err)]
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(header) = metadata.get("authorization") else {
            return Ok(Caller::Nobody);
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer <token>`")
            })?;
        let bytes = digest(token.as_bytes());
        let bytes = &bytes;
        // Every token is compared, whichever matches, so the time taken names none of them.
        let admin = Secret::matches(self.inner.admin.as_ref(), bytes);
        let service = Secret::matches(self.inner.service.as_ref(), bytes);
        let payment = Secret::matches(self.inner.payment.as_ref(), bytes);
        if admin {
            return Ok(Caller::Operator);
        }
        if service {
            return Ok(Caller::Service);
        }
        if payment {
            return Ok(Caller::Payment);
        }
        let jwt = token.split('.').count() == 3;
        match &self.inner.buyers {
            None if jwt => Ok(Caller::BuyerElsewhere),
            Some(buyers) if jwt => {
                let data = jsonwebtoken::decode::<Claims>(token, &buyers.key, &buyers.validation)
                    .map_err(|err| {
                    Status::unauthenticated(format!("the buyer token is not valid: {err}"))
                })?;
                let user = data.claims.sub;
                if user.trim().is_empty() || user.len() > MAX_USER_ID_LEN {
                    return Err(Status::unauthenticated(format!(
                        "the buyer token's sub must be a user id of 1 to {MAX_USER_ID_LEN} characters"
                    )));
                }
                Ok(Caller::Buyer(user))
            }
            _ => Err(Status::unauthenticated(
                "the bearer token is not one this service accepts",
            )),
        }
    }

    /// An operator's call.
    #[allow(clippy::result_large_err)]
    pub fn admin<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        match self.caller(request.metadata())? {
            Caller::Operator => Ok(()),
            Caller::Nobody => Err(Status::unauthenticated(
                "this call needs the admin token: send `authorization: Bearer <admin token>`",
            )),
            other => Err(denied(&other, "operators (the admin token)")),
        }
    }

    /// A service's call (`Participant.Execute`, `SagaEvents.Deliver`, `GetContact`).
    #[allow(clippy::result_large_err)]
    pub fn service<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        match self.caller(request.metadata())? {
            Caller::Service => Ok(()),
            Caller::Nobody => Err(Status::unauthenticated(
                "this call needs the service token: send `authorization: Bearer <service token>`",
            )),
            other => Err(denied(&other, "services (the service token)")),
        }
    }

    /// The payment provider's callback (`PayOrder`).
    #[allow(clippy::result_large_err)]
    pub fn payment<T>(&self, request: &tonic::Request<T>) -> Result<(), Status> {
        match self.caller(request.metadata())? {
            Caller::Payment => Ok(()),
            Caller::Nobody if self.inner.dev => Ok(()),
            Caller::Nobody => Err(Status::unauthenticated(
                "this call needs the payment token: send `authorization: Bearer <payment token>`",
            )),
            other => Err(denied(&other, "the payment provider (the payment token)")),
        }
    }

    /// A buyer's call: the token's buyer, or anyone for an operator (and, under `dev`, for a
    /// call without a credential).
    #[allow(clippy::result_large_err)]
    pub fn buyer<T>(&self, request: &tonic::Request<T>) -> Result<Actor, Status> {
        match self.caller(request.metadata())? {
            Caller::Buyer(user) => Ok(Actor::Buyer(user)),
            Caller::Operator => Ok(Actor::Anyone),
            Caller::Nobody if self.inner.dev => Ok(Actor::Anyone),
            Caller::Nobody => Err(Status::unauthenticated(
                "this call needs a buyer token: send `authorization: Bearer <JWT>`",
            )),
            other => Err(denied(&other, "buyers (a buyer token)")),
        }
    }
}

fn denied(caller: &Caller, for_whom: &str) -> Status {
    Status::permission_denied(format!(
        "this call is for {for_whom}; {} does not open it",
        caller.what()
    ))
}

#[cfg(test)]
mod tests;
