//! The `smtp` channel (e-mail): its settings, and a text and an HTML part through an SMTP
//! server (`lettre`).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use ticket_platform::config::ConfigSource;

use super::{Channel, Message};

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

/// `channels.email.*` of an `smtp` e-mail channel.
pub(super) fn load(source: &mut ConfigSource, timeout: Duration) -> Channel {
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

    /// Sends `message` as an e-mail with its text part and its HTML part (when it has one); its
    /// `Message-ID`, or why it was not sent.
    pub async fn send(&self, message: &Message<'_>) -> Result<String, String> {
        let to: Mailbox = message
            .to
            .parse()
            .map_err(|err| format!("the buyer's e-mail address does not parse: {err}"))?;
        let id = self.message_id(message.idempotency_key);
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.to_owned());
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject)
            .message_id(Some(id.clone()));
        let email = match message.html {
            Some(html) => builder.multipart(
                MultiPart::alternative().singlepart(text).singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html.to_owned()),
                ),
            ),
            None => builder.singlepart(text),
        }
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
