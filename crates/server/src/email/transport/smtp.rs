//! The SMTP transport (lettre): `SMTP_URL` is `smtp://user:pass@host:587` (STARTTLS when the
//! server offers it; `?tls=required` insists) or `smtps://host:465` (TLS from the start);
//! connections are pooled and reused. We set each message's `Message-ID` and record it; the
//! server's answer (often its queue id) is the provider id.

use super::{mime_message, Accepted, Envelope, Transport, TransportError};
use async_trait::async_trait;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use std::time::Duration;

pub struct Smtp {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for messages (never the credentials).
    server: String,
}

impl Smtp {
    /// A pooled transport for `url` (nothing connects until the first message).
    pub fn new(url: &str, pool_size: u32, timeout: Duration) -> Result<Self, TransportError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| TransportError::permanent(format!("SMTP_URL: {e}")))?;
        let server = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("?"),
            parsed
                .port()
                .map_or_else(|| "default".to_owned(), |p| p.to_string())
        );
        let inner = AsyncSmtpTransport::<Tokio1Executor>::from_url(parsed.as_str())
            .map_err(|e| TransportError::permanent(format!("SMTP_URL: {e}")))?
            .pool_config(PoolConfig::new().max_size(pool_size))
            .timeout(Some(timeout))
            .build();
        Ok(Self { inner, server })
    }
}

fn classify(server: &str, e: &lettre::transport::smtp::Error) -> TransportError {
    let message = format!("SMTP {server}: {e}");
    if e.is_permanent() {
        TransportError::permanent(message)
    } else {
        // 4xx answers, refused or dropped connections, timeouts, TLS trouble: try again later.
        TransportError::retryable(message)
    }
}

#[async_trait]
impl Transport for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, e: &Envelope) -> Result<Accepted, TransportError> {
        let message = mime_message(e)?;
        let response = self
            .inner
            .send(message)
            .await
            .map_err(|err| classify(&self.server, &err))?;
        let answer: String = response.message().collect::<Vec<_>>().join(" ");
        Ok(Accepted {
            provider_id: Some(answer.chars().take(200).collect())
                .filter(|s: &String| !s.is_empty()),
        })
    }

    async fn check(&self) -> Result<String, TransportError> {
        match self.inner.test_connection().await {
            Ok(true) => Ok(format!("SMTP {} answers", self.server)),
            Ok(false) => Err(TransportError::retryable(format!(
                "SMTP {} does not answer NOOP",
                self.server
            ))),
            Err(err) => Err(classify(&self.server, &err)),
        }
    }
}
