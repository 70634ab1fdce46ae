//! The `http` channel: a JSON POST to a provider's URL (SMS and push).

use std::time::Duration;

use super::Message;

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
            // Cut once the address in it is masked (`crate::delivery`).
            let text: String = text.chars().take(2000).collect();
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
