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

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use ticket_platform::config::ConfigSource;

/// A configured channel.
#[derive(Clone, Debug)]
pub enum Channel {
    Log,
    Http(HttpProvider),
    Smtp(Box<SmtpServer>),
}

/// How an SMTP connection is protected (`channels.email.tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Upgraded with STARTTLS, or no mail is sent (port 587 by default).
    StartTls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// In the clear: only for a relay on the same host (port 25 by default).
    None,
}

#[derive(Clone)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: Mailbox,
    /// The longest one message may take, from connecting to the server's last answer.
    pub timeout: Duration,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .finish()
    }
}

#[derive(Clone)]
pub struct HttpProvider {
    pub url: String,
    /// The `Authorization` header's value (`Bearer ...`), if the provider wants one.
    pub authorization: Option<String>,
    pub timeout: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("url", &self.url)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
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

/// One message to send.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    /// Where to (the full address; never logged).
    pub to: &'a str,
    /// The e-mail's subject (other channels have none).
    pub subject: &'a str,
    pub body: &'a str,
    pub order_no: &'a str,
    pub template: &'a str,
    pub idempotency_key: &'a str,
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
                    body = %message.body,
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
            "smtp" => smtp(source, timeout),
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

/// `channels.email.*` of an `smtp` e-mail channel.
fn smtp(source: &mut ConfigSource, timeout: Duration) -> Channel {
    let host = source.string("channels.email.host", "");
    if host.is_empty() {
        source.invalid("channels.email.host", "must name the SMTP server");
    }
    let tls = match source.string("channels.email.tls", "starttls").as_str() {
        "starttls" => SmtpTls::StartTls,
        "tls" => SmtpTls::Tls,
        "none" => SmtpTls::None,
        other => {
            source.invalid(
                "channels.email.tls",
                format!("is {other:?}; it must be starttls, tls or none"),
            );
            SmtpTls::StartTls
        }
    };
    if tls == SmtpTls::None && !matches!(host.as_str(), "127.0.0.1" | "::1" | "localhost") {
        source.invalid(
            "channels.email.tls",
            format!(
                "is none for {host:?}: mail (and its password) would cross the network in the \
                 clear; none is only for a relay on this host (127.0.0.1, ::1 or localhost)"
            ),
        );
    }
    let default_port = match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    };
    let port = source.get("channels.email.port", default_port);
    let from_text = source.string("channels.email.from", "");
    let from = from_text.parse::<Mailbox>().unwrap_or_else(|err| {
        source.invalid(
            "channels.email.from",
            format!("must be the sender's address (\"Tickets <tickets@example.com>\"): {err}"),
        );
        Mailbox::new(
            None,
            "invalid@invalid.invalid"
                .parse()
                .expect("a literal address"),
        )
    });
    let username = source.string("channels.email.username", "");
    let mut password = source.string("channels.email.password", "");
    let password_file = source.string("channels.email.password_file", "");
    if !password_file.is_empty() {
        match std::fs::read_to_string(&password_file) {
            Ok(text) => password = text.trim_end_matches(['\r', '\n']).to_owned(),
            Err(err) => source.invalid(
                "channels.email.password_file",
                format!("cannot be read ({password_file}): {err}"),
            ),
        }
    }
    if username.is_empty() != password.is_empty() {
        source.invalid(
            "channels.email.username",
            "and the password (channels.email.password or .password_file) go together",
        );
    }
    let builder = match tls {
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            host.clone(),
        )),
    };
    let builder = match builder {
        Ok(builder) => builder,
        Err(err) => {
            source.invalid(
                "channels.email.host",
                format!("cannot be used for TLS: {err}"),
            );
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        }
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    if !username.is_empty() {
        builder = builder.credentials(Credentials::new(username, password));
    }
    Channel::Smtp(Box::new(SmtpServer {
        host,
        port,
        tls,
        from,
        timeout,
        transport: builder.build(),
    }))
}

/// `text` with `<`, `>`, `&` and quotes escaped, for the HTML part.
fn html_escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

impl SmtpServer {
    /// The `Message-ID` of a notification: the same on every attempt.
    pub fn message_id(&self, idempotency_key: &str) -> String {
        let domain = self.from.email.domain();
        let local: String = idempotency_key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
            .collect();
        format!("<{local}@{domain}>")
    }

    /// Sends `message` as an e-mail with a text and an HTML part; its `Message-ID`, or why it
    /// was not sent.
    pub async fn send(&self, message: &Message<'_>) -> Result<String, String> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|err| format!("the buyer's e-mail address does not parse: {err}"))?;
        let id = self.message_id(message.idempotency_key);
        let html = format!(
            "<!DOCTYPE html><html><body><p>{}</p></body></html>",
            html_escape(message.body)
        );
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject)
            .message_id(Some(id.clone()))
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(message.body.to_owned()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|err| format!("the e-mail could not be built: {err}"))?;
        // lettre bounds the connect only; a server that stalls later is cut off here.
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_)) => Ok(id),
            Ok(Err(err)) => Err(format!(
                "the SMTP server {}:{} refused or failed: {err}",
                self.host, self.port
            )),
            Err(_) => Err(format!(
                "the SMTP server {}:{} did not finish within {:?}",
                self.host, self.port, self.timeout
            )),
        }
    }
}

impl HttpProvider {
    pub fn new(
        url: String,
        authorization: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|err| format!("the HTTP client could not be built: {err}"))?;
        Ok(Self {
            url,
            authorization,
            timeout,
            client,
        })
    }

    /// POSTs `message` as JSON; the provider's message id, or why it was not sent.
    pub async fn send(&self, message: &Message<'_>) -> Result<String, String> {
        let body = serde_json::json!({
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
            "order_no": message.order_no,
            "template": message.template,
        });
        let mut request = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", message.idempotency_key)
            .json(&body);
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        let response = request.send().await.map_err(|err| {
            if err.is_timeout() {
                format!("the provider did not answer within {:?}", self.timeout)
            } else {
                format!("the provider could not be reached: {err}")
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let text: String = text.chars().take(200).collect();
            return Err(format!("the provider answered {status}: {text}"));
        }
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        Ok(["id", "message_id"]
            .iter()
            .find_map(|key| answer.get(key).and_then(|v| v.as_str()))
            .unwrap_or_default()
            .to_owned())
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
