//! Catalog requests checked and turned into domain values at the edge: whatever fails here is
//! `INVALID_ARGUMENT` and nothing is written.

use chrono::{DateTime, Utc};
use ticket_proto::stock::v1 as pb;

use crate::error::Error;

pub const MAX_NAME: usize = 200;
pub const MAX_TOTAL: i64 = 1_000_000;
pub const MAX_PER_USER_LIMIT: i32 = 100;
/// A session's per-buyer limit when `CreateSession` gives 0.
pub const DEFAULT_SESSION_PER_USER_LIMIT: i32 = 6;
pub const MAX_PRICE_CENTS: i64 = 100_000_000;
pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 200;

pub struct NewShow {
    pub title: String,
    pub venue: String,
}

pub struct NewSession {
    pub show_id: i64,
    pub starts_at: DateTime<Utc>,
    pub sale_opens_at: DateTime<Utc>,
    pub sale_closes_at: DateTime<Utc>,
    /// The most tickets one buyer may hold across every tier of the session.
    pub per_user_limit: i32,
}

pub struct NewTier {
    pub session_id: i64,
    pub name: String,
    pub price_cents: i64,
    pub total: i64,
    /// The tier's own cap per buyer, within its session's limit; 0 = none.
    pub per_user_limit: i32,
}

pub struct Page {
    pub size: u64,
    /// Shows with an id above this one.
    pub after: i64,
}

fn text(field: &str, value: &str) -> Result<String, Error> {
    ticket_platform::fields::text(field, value, MAX_NAME, true).map_err(Error::Invalid)
}

pub fn id(field: &str, value: i64) -> Result<i64, Error> {
    if value <= 0 {
        return Err(Error::Invalid(format!(
            "{field} must be a positive id, got {value}"
        )));
    }
    Ok(value)
}

fn time(field: &str, value: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, Error> {
    let value = value.ok_or_else(|| Error::Invalid(format!("{field} is required")))?;
    ticket_platform::time::instant(&value)
        .ok_or_else(|| Error::Invalid(format!("{field} is not a valid time")))
}

impl TryFrom<pb::CreateShowRequest> for NewShow {
    type Error = Error;

    fn try_from(request: pb::CreateShowRequest) -> Result<Self, Error> {
        Ok(Self {
            title: text("title", &request.title)?,
            venue: text("venue", &request.venue)?,
        })
    }
}

impl TryFrom<pb::CreateSessionRequest> for NewSession {
    type Error = Error;

    fn try_from(request: pb::CreateSessionRequest) -> Result<Self, Error> {
        let session = Self {
            show_id: id("show_id", request.show_id)?,
            starts_at: time("starts_at", request.starts_at)?,
            sale_opens_at: time("sale_opens_at", request.sale_opens_at)?,
            sale_closes_at: time("sale_closes_at", request.sale_closes_at)?,
            per_user_limit: match request.per_user_limit {
                0 => DEFAULT_SESSION_PER_USER_LIMIT,
                n if (1..=MAX_PER_USER_LIMIT).contains(&n) => n,
                n => {
                    return Err(Error::Invalid(format!(
                        "per_user_limit must be between 1 and {MAX_PER_USER_LIMIT} tickets per \
                         buyer across the session's tiers, or 0 for the default of \
                         {DEFAULT_SESSION_PER_USER_LIMIT}; got {n}"
                    )));
                }
            },
        };
        if session.sale_opens_at >= session.sale_closes_at {
            return Err(Error::Invalid(
                "sale_opens_at must be before sale_closes_at".into(),
            ));
        }
        if session.sale_closes_at > session.starts_at {
            return Err(Error::Invalid(
                "sale_closes_at must not be after the session starts (starts_at)".into(),
            ));
        }
        Ok(session)
    }
}

impl TryFrom<pb::CreateTierRequest> for NewTier {
    type Error = Error;

    fn try_from(request: pb::CreateTierRequest) -> Result<Self, Error> {
        if !(0..=MAX_PRICE_CENTS).contains(&request.price_cents) {
            return Err(Error::Invalid(format!(
                "price_cents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if !(1..=MAX_TOTAL).contains(&request.total) {
            return Err(Error::Invalid(format!(
                "total must be between 1 and {MAX_TOTAL}"
            )));
        }
        if !(0..=MAX_PER_USER_LIMIT).contains(&request.per_user_limit) {
            return Err(Error::Invalid(format!(
                "per_user_limit of a tier must be between 1 and {MAX_PER_USER_LIMIT}, or 0 for no \
                 cap of its own (the session's limit applies); got {}",
                request.per_user_limit
            )));
        }
        Ok(Self {
            session_id: id("session_id", request.session_id)?,
            name: text("name", &request.name)?,
            price_cents: request.price_cents,
            total: request.total,
            per_user_limit: request.per_user_limit,
        })
    }
}

impl TryFrom<pb::ListShowsRequest> for Page {
    type Error = Error;

    fn try_from(request: pb::ListShowsRequest) -> Result<Self, Error> {
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n < 0 => return Err(Error::Invalid("page_size must not be negative".into())),
            n => u64::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
        };
        let after = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse::<i64>()
                .ok()
                .filter(|after| *after > 0)
                .ok_or_else(|| {
                    Error::Invalid("page_token is not one this service returned".into())
                })?
        };
        Ok(Self { size, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn tier() -> pb::CreateTierRequest {
        pb::CreateTierRequest {
            session_id: 1,
            name: "Floor".into(),
            price_cents: 9_900,
            total: 100,
            per_user_limit: 4,
        }
    }

    #[test]
    fn tiers_are_checked_field_by_field() {
        assert!(NewTier::try_from(tier()).is_ok());
        let uncapped = NewTier::try_from(pb::CreateTierRequest {
            per_user_limit: 0,
            ..tier()
        });
        assert!(
            uncapped.is_ok_and(|t| t.per_user_limit == 0),
            "0: no cap of the tier's own"
        );
        for bad in [
            pb::CreateTierRequest { total: 0, ..tier() },
            pb::CreateTierRequest {
                total: MAX_TOTAL + 1,
                ..tier()
            },
            pb::CreateTierRequest {
                price_cents: -1,
                ..tier()
            },
            pb::CreateTierRequest {
                per_user_limit: -1,
                ..tier()
            },
            pb::CreateTierRequest {
                per_user_limit: MAX_PER_USER_LIMIT + 1,
                ..tier()
            },
            pb::CreateTierRequest {
                name: "  ".into(),
                ..tier()
            },
            pb::CreateTierRequest {
                name: "x".repeat(MAX_NAME + 1),
                ..tier()
            },
            pb::CreateTierRequest {
                session_id: 0,
                ..tier()
            },
        ] {
            assert!(matches!(NewTier::try_from(bad), Err(Error::Invalid(_))));
        }
    }

    #[test]
    fn a_session_sells_before_it_starts() {
        let ok = pb::CreateSessionRequest {
            show_id: 1,
            starts_at: ts(300),
            sale_opens_at: ts(100),
            sale_closes_at: ts(200),
            per_user_limit: 4,
        };
        assert!(NewSession::try_from(ok).is_ok());
        let reversed = pb::CreateSessionRequest {
            sale_opens_at: ts(200),
            sale_closes_at: ts(100),
            ..ok
        };
        assert!(NewSession::try_from(reversed).is_err());
        let after_start = pb::CreateSessionRequest {
            sale_closes_at: ts(400),
            ..ok
        };
        assert!(NewSession::try_from(after_start).is_err());
        let missing = pb::CreateSessionRequest {
            starts_at: None,
            ..ok
        };
        assert!(NewSession::try_from(missing).is_err());
    }

    #[test]
    fn a_session_limit_is_checked_and_0_takes_the_default() {
        let session = |per_user_limit| pb::CreateSessionRequest {
            show_id: 1,
            starts_at: ts(300),
            sale_opens_at: ts(100),
            sale_closes_at: ts(200),
            per_user_limit,
        };
        let limit = |n| NewSession::try_from(session(n)).map(|s| s.per_user_limit);
        assert!(matches!(limit(0), Ok(DEFAULT_SESSION_PER_USER_LIMIT)));
        assert!(matches!(limit(1), Ok(1)));
        assert!(matches!(limit(MAX_PER_USER_LIMIT), Ok(MAX_PER_USER_LIMIT)));
        for bad in [-1, MAX_PER_USER_LIMIT + 1] {
            let Err(Error::Invalid(message)) = limit(bad) else {
                panic!("{bad} is refused");
            };
            assert!(message.contains("per_user_limit"), "{message}");
        }
    }

    #[test]
    fn page_tokens_are_checked() {
        let page = Page::try_from(pb::ListShowsRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .expect("ok");
        assert_eq!((page.size, page.after), (DEFAULT_PAGE, 0));
        let capped = Page::try_from(pb::ListShowsRequest {
            page_size: 10_000,
            page_token: "7".into(),
        })
        .expect("ok");
        assert_eq!((capped.size, capped.after), (MAX_PAGE, 7));
        assert!(
            Page::try_from(pb::ListShowsRequest {
                page_size: -1,
                page_token: String::new()
            })
            .is_err()
        );
        assert!(
            Page::try_from(pb::ListShowsRequest {
                page_size: 1,
                page_token: "abc".into()
            })
            .is_err()
        );
    }
}
