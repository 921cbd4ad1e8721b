//! The Resend transport: `POST {RESEND_API_URL}/emails` as documented
//! (<https://resend.com/docs/api-reference/emails/send-email>) with `from`, `to`, `subject`,
//! `html`, `text`, `tags` and our `Message-ID` header, authorised by `RESEND_API_KEY`, and an
//! `Idempotency-Key` of the message's id, so a retried send is delivered once. A `429` is waited
//! out (its `Retry-After`, a few times within one attempt, then the queue's backoff); other
//! `4xx` fail for good with Resend's message; `5xx`, `401`/`403` (a key problem an operator must
//! fix) and network errors are retried.

use super::{Accepted, Envelope, Transport, TransportError};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::time::Duration;

pub struct Resend {
    http: reqwest::Client,
    base: url::Url,
    key: SecretString,
    /// Longest `Retry-After` waited out inside one attempt.
    max_wait: Duration,
}

/// How many `429`s one attempt waits out before giving the message back to the queue.
const WAITS_PER_ATTEMPT: u32 = 2;

impl Resend {
    pub fn new(
        base: url::Url,
        key: SecretString,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("airwave-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::permanent(format!("the Resend client: {e}")))?;
        Ok(Self {
            http,
            base,
            key,
            max_wait: Duration::from_secs(5),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, TransportError> {
        let mut base = self.base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path)
            .map_err(|e| TransportError::permanent(format!("RESEND_API_URL: {e}")))
    }
}

/// `Retry-After` in seconds (Resend sends seconds); an HTTP date is taken as a minute.
fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let v = r
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    Some(
        v.trim()
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(60)),
    )
}

/// Resend's error body is `{"statusCode", "name", "message"}`.
async fn provider_message(r: reqwest::Response) -> String {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    let name = body.get("name").and_then(Value::as_str).unwrap_or("error");
    format!(
        "Resend answered {}: {name}: {}",
        status.as_u16(),
        message.chars().take(500).collect::<String>()
    )
}

#[async_trait]
impl Transport for Resend {
    fn name(&self) -> &'static str {
        "resend"
    }

    async fn send(&self, e: &Envelope) -> Result<Accepted, TransportError> {
        let body = json!({
            "from": e.from,
            "to": [e.to],
            "subject": e.subject,
            "html": e.html,
            "text": e.text,
            "tags": e.tags.iter().map(|(name, value)| json!({"name": name, "value": value})).collect::<Vec<_>>(),
            "headers": {"Message-ID": e.message_id},
        });
        let url = self.url("emails")?;
        let mut waited = 0;
        loop {
            let r = self
                .http
                .post(url.clone())
                .bearer_auth(self.key.expose_secret())
                .header("Idempotency-Key", &e.id)
                .json(&body)
                .send()
                .await
                .map_err(|err| {
                    TransportError::retryable(format!("Resend: {}", err.without_url()))
                })?;
            let status = r.status();
            if status.is_success() {
                let v: Value = r.json().await.map_err(|err| {
                    TransportError::retryable(format!("Resend's answer: {}", err.without_url()))
                })?;
                return Ok(Accepted {
                    provider_id: v.get("id").and_then(Value::as_str).map(str::to_owned),
                });
            }
            if status.as_u16() == 429 {
                let after = retry_after(&r);
                let wait = after.unwrap_or(Duration::from_secs(1));
                if waited < WAITS_PER_ATTEMPT && wait <= self.max_wait {
                    waited += 1;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(TransportError::Retryable {
                    message: provider_message(r).await,
                    retry_after: after,
                });
            }
            if status.is_server_error() {
                let after = retry_after(&r);
                return Err(TransportError::Retryable {
                    message: provider_message(r).await,
                    retry_after: after,
                });
            }
            // 3xx (never followed) and 4xx: the request is wrong; sending it again will not help.
            if matches!(status.as_u16(), 401 | 403) {
                // A revoked or mistyped key: every message would fail for good until an operator
                // fixes it; keep them waiting instead (the health check says why).
                return Err(TransportError::retryable(provider_message(r).await));
            }
            return Err(TransportError::permanent(provider_message(r).await));
        }
    }

    async fn check(&self) -> Result<String, TransportError> {
        // Any HTTP answer means the API is reachable (a sending-only key may not list domains).
        let r = self
            .http
            .get(self.url("domains")?)
            .bearer_auth(self.key.expose_secret())
            .send()
            .await
            .map_err(|err| TransportError::retryable(format!("Resend: {}", err.without_url())))?;
        if r.status().is_server_error() || matches!(r.status().as_u16(), 401 | 403) {
            return Err(TransportError::retryable(format!(
                "Resend answered {}",
                r.status().as_u16()
            )));
        }
        Ok(format!("Resend API answers ({})", r.status().as_u16()))
    }
}
