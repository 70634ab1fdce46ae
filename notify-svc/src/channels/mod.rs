//! Where each channel's notifications go, chosen by configuration:
//! - `log` (the default of every channel): the message is written to the service log;
//! - `http` (SMS and push): a JSON POST to a provider's URL, with an auth header and a timeout;
//!   a non-2xx answer or a timeout is a failure, and the provider's message id (`id` or
//!   `message_id` in its JSON answer) is kept;
//! - `smtp` (e-mail): a text and an HTML part through an SMTP server (`lettre`), over STARTTLS
//!   (the default), TLS, or in the clear to a relay on the same host; credentials from the
//!   environment or a file.
//!
//! Every send carries the notification's idempotency key, the same on every attempt (the
//! `Idempotency-Key` header; the e-mail's `Message-ID`), so a provider that deduplicates drops
//! a resend after a crash.

mod http;
mod smtp;

use std::time::Duration;

use ticket_platform::config::ConfigSource;

pub use self::http::HttpProvider;
pub use self::smtp::{SmtpServer, SmtpTls};

/// A configured channel.
#[derive(Clone, Debug)]
pub enum Channel {
    Log,
    Http(HttpProvider),
    Smtp(Box<SmtpServer>),
}

/// The three channels.
#[derive(Clone, Debug)]
pub struct Channels {
    pub sms: Channel,
    pub email: Channel,
    pub push: Channel,
    /// The longest a provider or mail server may take to answer one message.
    pub timeout: Duration,
}

/// One message to send (its `Debug` leaves the address out).
#[derive(Clone)]
pub struct Message<'a> {
    /// Where to (the full address; never logged).
    pub to: &'a str,
    /// The e-mail's subject (other channels have none).
    pub subject: &'a str,
    /// The text (the e-mail's plain-text part).
    pub body: &'a str,
    /// The e-mail's HTML part.
    pub html: Option<&'a str>,
    pub order_no: &'a str,
    pub template: &'a str,
    pub idempotency_key: &'a str,
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("order_no", &self.order_no)
            .field("template", &self.template)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Sends `message` (`recipient` is its address masked, for the log); the provider's id of
    /// the message, or why it was not sent.
    pub async fn send(&self, message: &Message<'_>, recipient: &str) -> Result<String, String> {
        match self {
            Self::Log => {
                tracing::info!(
                    order_no = %message.order_no,
                    template = %message.template,
                    %recipient,
                    subject = %message.subject,
                    body = ?message.body,
                    "notification"
                );
                Ok("log".into())
            }
            Self::Http(provider) => provider.send(message).await,
            Self::Smtp(server) => server.send(message).await,
        }
    }
}

impl Channels {
    /// `channels.<sms|push>.kind` (`log` or `http`, with its `.url` and `.authorization`),
    /// `channels.email.kind` (`log` or `smtp`, with its `.host`, `.port`, `.tls`, `.from`,
    /// `.username` and `.password` or `.password_file`), and `channels.http_timeout_ms` (also
    /// the SMTP timeout). A bad setting is a start-up error naming it.
    pub fn load(source: &mut ConfigSource) -> Self {
        let timeout = source.millis("channels.http_timeout_ms", Duration::from_secs(5));
        if timeout.is_zero() {
            source.invalid("channels.http_timeout_ms", "must be above 0");
        }
        let mut one = |name: &str| -> Channel {
            let key = format!("channels.{name}.kind");
            match source.string(&key, "log").as_str() {
                "log" => Channel::Log,
                "http" => {
                    let url = source.string(&format!("channels.{name}.url"), "");
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        source.invalid(
                            &format!("channels.{name}.url"),
                            "must be the provider's http:// or https:// URL",
                        );
                    }
                    let authorization =
                        source.string(&format!("channels.{name}.authorization"), "");
                    let authorization = (!authorization.is_empty()).then_some(authorization);
                    match HttpProvider::new(url, authorization, timeout) {
                        Ok(provider) => Channel::Http(provider),
                        Err(err) => {
                            source.invalid(&key, err);
                            Channel::Log
                        }
                    }
                }
                other => {
                    source.invalid(&key, format!("is {other:?}; it must be log or http"));
                    Channel::Log
                }
            }
        };
        let sms = one("sms");
        let push = one("push");
        let email = match source.string("channels.email.kind", "log").as_str() {
            "log" => Channel::Log,
            "smtp" => smtp::load(source, timeout),
            other => {
                source.invalid(
                    "channels.email.kind",
                    format!("is {other:?}; it must be log or smtp"),
                );
                Channel::Log
            }
        };
        Self {
            sms,
            email,
            push,
            timeout,
        }
    }

    /// The channel of a notification's channel name (`SMS`, `EMAIL`, `PUSH`).
    pub fn of(&self, channel: &str) -> Option<&Channel> {
        match channel {
            "SMS" => Some(&self.sms),
            "EMAIL" => Some(&self.email),
            "PUSH" => Some(&self.push),
            _ => None,
        }
    }

    /// Whether any channel needs the buyers' contacts (every channel but the log).
    pub fn need_contacts(&self) -> bool {
        [&self.sms, &self.email, &self.push]
            .iter()
            .any(|channel| !matches!(channel, Channel::Log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Channels, String> {
        let mut source = ConfigSource::from_pairs(
            "TICKET_NOTIFY",
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let channels = Channels::load(&mut source);
        source
            .finish()
            .map(|()| channels)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn every_channel_logs_unless_configured() {
        let channels = load(&[]).expect("defaults");
        assert!(matches!(channels.sms, Channel::Log));
        assert!(!channels.need_contacts());
        let channels = load(&[
            ("TICKET_NOTIFY_CHANNELS__SMS__KIND", "http"),
            ("TICKET_NOTIFY_CHANNELS__SMS__URL", "http://127.0.0.1:9/sms"),
            (
                "TICKET_NOTIFY_CHANNELS__SMS__AUTHORIZATION",
                "Bearer s3cret",
            ),
        ])
        .expect("an HTTP SMS provider");
        let Channel::Http(provider) = &channels.sms else {
            panic!("not http: {:?}", channels.sms);
        };
        assert_eq!(provider.authorization.as_deref(), Some("Bearer s3cret"));
        assert!(!format!("{provider:?}").contains("s3cret"));
        assert!(channels.need_contacts());
    }

    #[test]
    fn a_bad_channel_setting_is_named_at_start_up() {
        let err = load(&[("TICKET_NOTIFY_CHANNELS__PUSH__KIND", "carrier-pigeon")])
            .expect_err("an unknown kind");
        assert!(err.contains("TICKET_NOTIFY_CHANNELS__PUSH__KIND"), "{err}");
        let err = load(&[("TICKET_NOTIFY_CHANNELS__SMS__KIND", "http")]).expect_err("no URL");
        assert!(err.contains("TICKET_NOTIFY_CHANNELS__SMS__URL"), "{err}");
        let err =
            load(&[("TICKET_NOTIFY_CHANNELS__EMAIL__KIND", "http")]).expect_err("no e-mail API");
        assert!(err.contains("must be log or smtp"), "{err}");
        let err = load(&[
            ("TICKET_NOTIFY_CHANNELS__EMAIL__KIND", "smtp"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__HOST", "mail.example.com"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__FROM", "not an address"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__USERNAME", "tickets"),
        ])
        .expect_err("a bad sender and a user without a password");
        assert!(err.contains("TICKET_NOTIFY_CHANNELS__EMAIL__FROM"), "{err}");
        assert!(err.contains("go together"), "{err}");
        let err = load(&[
            ("TICKET_NOTIFY_CHANNELS__EMAIL__KIND", "smtp"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__HOST", "mail.example.com"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__TLS", "none"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__FROM", "tickets@example.com"),
        ])
        .expect_err("mail in the clear across the network");
        assert!(err.contains("TICKET_NOTIFY_CHANNELS__EMAIL__TLS"), "{err}");
    }

    #[tokio::test]
    async fn an_smtp_channel_takes_its_password_from_a_file_and_never_prints_it() {
        let file = std::env::temp_dir().join(format!("smtp-password-{}", std::process::id()));
        std::fs::write(&file, "pa55word\n").expect("write");
        let channels = load(&[
            ("TICKET_NOTIFY_CHANNELS__EMAIL__KIND", "smtp"),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__HOST", "mail.example.com"),
            (
                "TICKET_NOTIFY_CHANNELS__EMAIL__FROM",
                "Tickets <tickets@example.com>",
            ),
            ("TICKET_NOTIFY_CHANNELS__EMAIL__USERNAME", "tickets"),
            (
                "TICKET_NOTIFY_CHANNELS__EMAIL__PASSWORD_FILE",
                file.to_str().expect("utf-8"),
            ),
        ])
        .expect("an SMTP channel");
        let _ = std::fs::remove_file(&file);
        let Channel::Smtp(server) = &channels.email else {
            panic!("not smtp: {:?}", channels.email);
        };
        assert_eq!((server.port, server.tls), (587, SmtpTls::StartTls));
        assert_eq!(
            server.message_id("T1:purchase_confirmed:EMAIL"),
            "<T1.purchase.confirmed.EMAIL@example.com>"
        );
        assert!(!format!("{channels:?}").contains("pa55word"));
        assert!(channels.need_contacts());
    }
}
