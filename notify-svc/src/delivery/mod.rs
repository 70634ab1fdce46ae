//! Sending the delivery log's notifications, once per (order, channel, template), outside any
//! transaction:
//! 1. a poll claims due rows `SENDING` for a lease, counting the attempt, in a statement of its
//!    own that commits before anything is sent (`FOR UPDATE SKIP LOCKED`: replicas share rows);
//! 2. each claimed row is rendered from its templates and sent on its channel, to the contact
//!    the buyer gave; the order, its contact and its show are asked of their owners at the
//!    time of sending (`crate::facts`; the contact is never stored here in full);
//! 3. the outcome is recorded: `SENT` with the provider's id, `PENDING` again after a doubling
//!    backoff with the error, `FAILED` once its attempts are spent, `SKIPPED` when the buyer
//!    gave nothing to send it to on that channel. A record is a compare-and-set on the claimed
//!    attempt, so a worker whose lease ran out records nothing over a later attempt.
//!
//! The one window left: a crash after the provider accepted a message and before its outcome
//! was recorded. The lease runs out, the row is claimed again and sent again with the same
//! idempotency key (`<order>:<template>:<channel>`), which a provider that deduplicates drops.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, Statement};
use ticket_platform::contact::{mask_email, mask_in, mask_phone, mask_token};
use ticket_proto::order::v1::Contact;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channels::{Channel, Channels, Message};
use crate::facts::{LookupError, Sources};
use crate::templates::{Rendered, Templates};

mod settings;

pub use self::settings::DeliverySettings;

/// The longest error kept with a notification.
const ERROR_KEPT: usize = 300;

/// A provider's or server's error with the address in it masked ([`mask_in`]), then cut to
/// [`ERROR_KEPT`] characters: the masking comes first, so a cut cannot leave part of an
/// address in clear.
fn scrub(error: &str, to: &str, recipient: &str) -> String {
    mask_in(error, to, recipient)
        .chars()
        .take(ERROR_KEPT)
        .collect()
}

/// The part of a buyer's contact a channel sends to, how it is masked, and what it is called.
struct ContactPart {
    value: fn(&Contact) -> &str,
    mask: fn(&str) -> String,
    name: &'static str,
}

/// The contact part of `channel` (`SMS`, `EMAIL`, `PUSH`).
fn contact_part(channel: &str) -> ContactPart {
    match channel {
        "SMS" => ContactPart {
            value: |c| &c.phone,
            mask: mask_phone,
            name: "phone number",
        },
        "EMAIL" => ContactPart {
            value: |c| &c.email,
            mask: mask_email,
            name: "e-mail address",
        },
        _ => ContactPart {
            value: |c| &c.push_token,
            mask: mask_token,
            name: "push device token",
        },
    }
}

/// A claimed row.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub order_no: String,
    pub channel: String,
    pub template: String,
    pub user_id: String,
    pub body: String,
    pub attempts: i32,
    /// This claim's number (only grows; the outcome is recorded only under it).
    pub claims: i32,
    /// The trace of the command that queued it.
    pub traceparent: Option<String>,
}

impl Claimed {
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}:{}", self.order_no, self.template, self.channel)
    }
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent {
        provider_id: String,
        recipient: String,
        /// The text it was sent with.
        text: String,
    },
    /// Nothing to send it to on this channel.
    Skipped { reason: String },
    Failed {
        error: String,
        /// Where it was to go, masked, once known.
        recipient: Option<String>,
    },
    /// What the notification is about could not be asked for (order-svc or stock-svc away):
    /// tried again later, without spending an attempt.
    Postponed { error: String },
}

/// The sender: the delivery log, the channels, the templates, and where what a notification
/// says and where it goes come from.
#[derive(Clone)]
pub struct Delivery {
    pub db: DatabaseConnection,
    pub channels: Arc<Channels>,
    pub templates: Arc<Templates>,
    /// `None` when no channel needs contacts and order-svc's address is not given (every
    /// channel logs): the log then names the buyer's user id and writes the event's line.
    pub sources: Option<Sources>,
    pub settings: DeliverySettings,
}

impl Delivery {
    /// Claims up to `limit` due rows for a lease, in a statement of its own.
    pub async fn claim(&self, limit: usize) -> Result<Vec<Claimed>, DbErr> {
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "UPDATE notification SET status = 'SENDING', attempts = attempts + 1, \
                   claims = claims + 1, \
                   claimed_until = now() + $2 * INTERVAL '1 millisecond', updated_at = now() \
                 WHERE id IN ( \
                   SELECT id FROM notification \
                   WHERE status IN ('PENDING', 'SENDING') AND next_attempt_at <= now() \
                     AND (status = 'PENDING' OR claimed_until < now()) \
                   ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id, order_no, channel, template, user_id, body, attempts, claims, \
                   traceparent",
                [
                    i64::try_from(limit).unwrap_or(i64::MAX).into(),
                    lease_ms.into(),
                ],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    id: row.try_get("", "id")?,
                    order_no: row.try_get("", "order_no")?,
                    channel: row.try_get("", "channel")?,
                    template: row.try_get("", "template")?,
                    user_id: row.try_get("", "user_id")?,
                    body: row.try_get("", "body")?,
                    attempts: row.try_get("", "attempts")?,
                    claims: row.try_get("", "claims")?,
                    traceparent: row.try_get("", "traceparent")?,
                })
            })
            .collect()
    }

    /// Sends a claimed row on its channel (no transaction is open meanwhile).
    pub async fn attempt(&self, claimed: &Claimed) -> Outcome {
        let Some(channel) = self.channels.of(&claimed.channel) else {
            return Outcome::Failed {
                error: format!("channel {} is not configured", claimed.channel),
                recipient: None,
            };
        };
        let about = match &self.sources {
            Some(sources) => match sources.about(&claimed.order_no).await {
                Ok(about) => Some(about),
                Err(LookupError::Unavailable(error)) => return Outcome::Postponed { error },
                Err(LookupError::Refused(error)) => {
                    return Outcome::Failed {
                        error,
                        recipient: None,
                    };
                }
            },
            None => None,
        };
        let part = contact_part(&claimed.channel);
        let address = about.as_ref().and_then(|about| {
            let value = (part.value)(&about.contact);
            (!value.is_empty()).then(|| (value.to_owned(), (part.mask)(value)))
        });
        // The log channel names the buyer when no contact is known; the others need one.
        let (to, recipient) = match (channel, address) {
            (_, Some(address)) => address,
            (Channel::Log, None) => (claimed.user_id.clone(), claimed.user_id.clone()),
            (_, None) => {
                return Outcome::Skipped {
                    reason: format!("the buyer gave no {}", part.name),
                };
            }
        };
        let rendered = match &about {
            Some(about) => {
                match self
                    .templates
                    .render(&claimed.template, &claimed.channel, &about.facts)
                {
                    Ok(rendered) => rendered,
                    Err(error) => {
                        return Outcome::Failed {
                            error,
                            recipient: Some(recipient),
                        };
                    }
                }
            }
            None => Rendered {
                subject: String::new(),
                text: claimed.body.clone(),
                html: None,
            },
        };
        let key = claimed.idempotency_key();
        let message = Message {
            to: &to,
            subject: &rendered.subject,
            body: &rendered.text,
            html: rendered.html.as_deref(),
            order_no: &claimed.order_no,
            template: &claimed.template,
            idempotency_key: &key,
        };
        match channel.send(&message, &recipient).await {
            Ok(provider_id) => Outcome::Sent {
                provider_id,
                recipient,
                text: rendered.text,
            },
            // A server's answer may quote the address: it is kept and logged masked only.
            Err(error) => Outcome::Failed {
                error: scrub(&error, &to, &recipient),
                recipient: Some(recipient),
            },
        }
    }

    /// Records what `claimed`'s attempt came to; `false` when the row had moved on (another
    /// worker's later attempt).
    pub async fn record(&self, claimed: &Claimed, outcome: &Outcome) -> Result<bool, DbErr> {
        let mut spent = 0;
        let mut text = None;
        let (status, provider_id, recipient, error, retry_ms) = match outcome {
            Outcome::Postponed { error } => {
                spent = 1;
                let wait = self.settings.backoff.max(Duration::from_secs(5));
                let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                ("PENDING", None, None, Some(error.clone()), ms)
            }
            Outcome::Sent {
                provider_id,
                recipient,
                text: sent,
            } => {
                text = Some(sent.clone());
                (
                    "SENT",
                    Some(provider_id.clone()),
                    Some(recipient.clone()),
                    None,
                    0,
                )
            }
            Outcome::Skipped { reason } => ("SKIPPED", None, None, Some(reason.clone()), 0),
            Outcome::Failed { error, recipient }
                if claimed.attempts >= self.settings.max_attempts =>
            {
                ("FAILED", None, recipient.clone(), Some(error.clone()), 0)
            }
            Outcome::Failed { error, recipient } => {
                let wait = self.settings.backoff_after(claimed.attempts);
                let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
                ("PENDING", None, recipient.clone(), Some(error.clone()), ms)
            }
        };
        if let Outcome::Failed { error, .. } | Outcome::Postponed { error } = outcome {
            tracing::warn!(order_no = %claimed.order_no, channel = %claimed.channel, attempt = claimed.attempts, %error, next = status, "a notification was not sent");
        }
        let updated = self
            .db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                "UPDATE notification SET status = $3, provider_id = COALESCE($4, provider_id), \
                   recipient = COALESCE($5, recipient), last_error = COALESCE($6, last_error), \
                   sent_at = CASE WHEN $3 = 'SENT' THEN now() END, \
                   next_attempt_at = now() + $7 * INTERVAL '1 millisecond', \
                   attempts = attempts - $8, body = COALESCE($9, body), claimed_until = NULL, \
                   updated_at = now() \
                 WHERE id = $1 AND status = 'SENDING' AND claims = $2",
                [
                    claimed.id.into(),
                    claimed.claims.into(),
                    status.into(),
                    provider_id.into(),
                    recipient.into(),
                    error.into(),
                    retry_ms.into(),
                    spent.into(),
                    text.into(),
                ],
            ))
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// Claims, sends and records until `stop`; sends under way finish first.
    pub fn spawn(self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(self.settings.concurrency));
            loop {
                if stop.is_cancelled() {
                    break;
                }
                let free = permits.available_permits();
                let claimed = if free == 0 {
                    Vec::new()
                } else {
                    self.claim(free).await.unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "due notifications could not be claimed; trying again");
                        Vec::new()
                    })
                };
                let busy = !claimed.is_empty();
                for row in claimed {
                    let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                        return;
                    };
                    let delivery = self.clone();
                    let span = ticket_platform::telemetry::continuing(
                        tracing::info_span!(
                            "send notification",
                            order_no = %row.order_no,
                            channel = %row.channel,
                            template = %row.template,
                            attempt = row.attempts
                        ),
                        row.traceparent.as_deref(),
                    );
                    let send = async move {
                        let limit = delivery.settings.attempt_limit();
                        let outcome = tokio::time::timeout(limit, delivery.attempt(&row))
                            .await
                            .unwrap_or_else(|_| Outcome::Failed {
                                recipient: None,
                                error: format!("the attempt did not finish within {limit:?}"),
                            });
                        if let Err(err) = delivery.record(&row, &outcome).await {
                            tracing::warn!(error = %err, order_no = %row.order_no, channel = %row.channel, "a notification's outcome could not be recorded; it is tried again when its lease runs out");
                        }
                        drop(permit);
                    };
                    tokio::spawn(send.instrument(span));
                }
                if busy {
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(self.settings.poll) => {}
                    () = stop.cancelled() => break,
                }
            }
            let all = u32::try_from(self.settings.concurrency).unwrap_or(u32::MAX);
            let _ = permits.acquire_many(all).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_no_form_of_the_address_even_when_cut() {
        let token = "t".repeat(150) + "SECRET";
        let error = format!("{}: bad token {token}", "x".repeat(100));
        let kept = scrub(&error, &token, "ttt***ET");
        assert!(
            !kept.contains("SECRET") && !kept.contains(&"t".repeat(20)),
            "{kept}"
        );
        let kept = scrub(
            "550 mailbox Buyer@Example.com unknown; 14155550123 too",
            "buyer@example.com",
            "b***@example.com",
        );
        assert!(kept.contains("b***@example.com"), "{kept}");
        assert_eq!(
            scrub("no such number 14155550123", "+14155550123", "+14*******23"),
            "no such number +14*******23"
        );
    }
}
