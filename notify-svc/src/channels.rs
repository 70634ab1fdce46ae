//! Where each channel's notifications go, chosen by configuration:
//! - `log` (the default of every channel): the message is written to the service log;
//! - `http` (SMS and push): a JSON POST to a provider's URL, with an auth header and a timeout;
//!   a non-2xx answer or a timeout is a failure, and the provider's message id (`id` or
//!   `message_id` in its JSON answer) is kept.
//!
//! Every send carries the notification's idempotency key (`Idempotency-Key`), the same on
//! every attempt, so a provider that deduplicates drops a resend after a crash.

use std::time::Duration;

use ticket_platform::config::ConfigSource;

/// A configured channel.
#[derive(Clone, Debug)]
pub enum Channel {
    Log,
    Http(HttpProvider),
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
}

/// One message to send.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    /// Where to (the full address; never logged).
    pub to: &'a str,
    pub body: &'a str,
    pub order_no: &'a str,
    pub template: &'a str,
    pub idempotency_key: &'a str,
}

impl Channels {
    /// `channels.<sms|email|push>.kind` (`log` or `http`; e-mail: `log`), and for `http` its
    /// `.url`, `.authorization` and `channels.http_timeout_ms`. A bad setting is a start-up
    /// error naming it.
    pub fn load(source: &mut ConfigSource) -> Self {
        let timeout = source.millis("channels.http_timeout_ms", Duration::from_secs(5));
        if timeout.is_zero() {
            source.invalid("channels.http_timeout_ms", "must be above 0");
        }
        let mut one = |name: &str, http: bool| {
            let key = format!("channels.{name}.kind");
            match source.string(&key, "log").as_str() {
                "log" => Channel::Log,
                "http" if http => {
                    let url = source.string(&format!("channels.{name}.url"), "");
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        source.invalid(
                            &format!("channels.{name}.url"),
                            "must be the provider's http:// or https:// URL",
                        );
                    }
                    let authorization =
                        source.string(&format!("channels.{name}.authorization"), "");
                    Channel::Http(HttpProvider::new(
                        url,
                        (!authorization.is_empty()).then_some(authorization),
                        timeout,
                    ))
                }
                other => {
                    let kinds = if http { "log or http" } else { "log" };
                    source.invalid(&key, format!("is {other:?}; it must be {kinds}"));
                    Channel::Log
                }
            }
        };
        Self {
            sms: one("sms", true),
            email: one("email", false),
            push: one("push", true),
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

impl HttpProvider {
    pub fn new(url: String, authorization: Option<String>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        Self {
            url,
            authorization,
            timeout,
            client,
        }
    }

    /// POSTs `message` as JSON; the provider's message id, or why it was not sent.
    pub async fn send(&self, message: &Message<'_>) -> Result<String, String> {
        let body = serde_json::json!({
            "to": message.to,
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
        assert!(err.contains("must be log"), "{err}");
    }
}
