//! The `Transport` seam: where a rendered message goes. **Resend** (its HTTP API), **SMTP**
//! (lettre, pooled, STARTTLS or TLS) and the **outbox** (the embedded default: every message
//! written to a folder as `.eml` and `.json`, readable by people and tests). One conformance
//! suite runs against all three (`crates/server/tests/it/email_transport.rs`).

pub mod outbox;
pub mod resend;
pub mod smtp;

use async_trait::async_trait;
use std::time::Duration;

/// A message ready to go: rendered, its links' tokens in place.
#[derive(Clone)]
pub struct Envelope {
    /// Our id (`msg_…`): Resend's `Idempotency-Key`, the outbox's file name.
    pub id: String,
    /// The `Message-ID` header we set (`<msg_…@domain>`) and record.
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// `(name, value)` pairs: Resend's `tags` (the template's name).
    pub tags: Vec<(String, String)>,
}

impl std::fmt::Debug for Envelope {
    // The bodies may carry a link's token: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("id", &self.id)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// The transport took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id of the message (Resend's `id`, the SMTP server's answer, the file).
    pub provider_id: Option<String>,
}

/// Why a transport did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// It may work later (connection refused, 4xx from SMTP, 429 or 5xx from Resend).
    #[error("{message}")]
    Retryable {
        message: String,
        /// What the provider asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// It will not work (a refused address, a bad request: the provider's message).
    #[error("{message}")]
    Permanent { message: String },
}

impl TransportError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait Transport: Send + Sync {
    /// `resend`, `smtp` or `outbox`.
    fn name(&self) -> &'static str;
    /// Hands one message over.
    async fn send(&self, envelope: &Envelope) -> Result<Accepted, TransportError>;
    /// Whether it can take messages now (the `email` health component): what was checked.
    async fn check(&self) -> Result<String, TransportError>;
}

/// The RFC 5322 message of an envelope (SMTP and the outbox): multipart/alternative with the
/// text part first, our `Message-ID`.
pub fn mime_message(e: &Envelope) -> Result<lettre::Message, TransportError> {
    use lettre::message::{Mailbox, MultiPart};
    let mailbox = |what: &str, v: &str| {
        v.parse::<Mailbox>()
            .map_err(|err| TransportError::permanent(format!("the {what} address `{v}`: {err}")))
    };
    lettre::Message::builder()
        .from(mailbox("sender", &e.from)?)
        .to(mailbox("recipient", &e.to)?)
        .subject(e.subject.clone())
        .message_id(Some(e.message_id.clone()))
        .multipart(MultiPart::alternative_plain_html(
            e.text.clone(),
            e.html.clone(),
        ))
        .map_err(|err| TransportError::permanent(format!("building the message: {err}")))
}

/// The domain of a sender like `AIrWAVE <notifications@airwave.app>` (for `Message-ID`s).
pub fn sender_domain(from: &str) -> String {
    from.parse::<lettre::message::Mailbox>()
        .map(|m| m.email.domain().to_owned())
        .unwrap_or_else(|_| "airwave.local".into())
}

/// The configured transport. One that cannot be built (a malformed `SMTP_URL` that passed the
/// scheme check) answers every send with the reason, so messages wait and the health check says
/// why.
pub fn from_config(c: &crate::email::settings::EmailConfig) -> std::sync::Arc<dyn Transport> {
    use crate::email::settings::TransportConfig;
    use secrecy::ExposeSecret as _;
    let built: Result<std::sync::Arc<dyn Transport>, TransportError> = match &c.transport {
        TransportConfig::Outbox { dir } => {
            Ok(std::sync::Arc::new(outbox::Outbox::new(dir.clone())))
        }
        TransportConfig::Smtp { url, pool } => {
            smtp::Smtp::new(url.expose_secret(), *pool, c.send_timeout)
                .map(|t| std::sync::Arc::new(t) as _)
        }
        TransportConfig::Resend { base, key } => {
            resend::Resend::new(base.clone(), key.clone(), c.send_timeout)
                .map(|t| std::sync::Arc::new(t) as _)
        }
    };
    built.unwrap_or_else(|e| {
        tracing::error!(error = %e, transport = c.transport.name(), "the e-mail transport cannot be built");
        std::sync::Arc::new(Unusable { name: c.transport.name(), reason: e.to_string() })
    })
}

struct Unusable {
    name: &'static str,
    reason: String,
}

#[async_trait]
impl Transport for Unusable {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&self, _: &Envelope) -> Result<Accepted, TransportError> {
        Err(TransportError::retryable(self.reason.clone()))
    }

    async fn check(&self) -> Result<String, TransportError> {
        Err(TransportError::retryable(self.reason.clone()))
    }
}

/// The `email` health component: the transport can take messages now. Unreachable is `warn`,
/// not `fail`: messages wait in the queue and the API goes on serving.
pub struct EmailCheck {
    pub transport: std::sync::Arc<dyn Transport>,
}

#[async_trait]
impl crate::health::HealthCheck for EmailCheck {
    fn key(&self) -> &str {
        "email:responseTime"
    }

    fn component_type(&self) -> &str {
        "component"
    }

    async fn check(&self) -> airwave_api::HealthCheckOut {
        let start = std::time::Instant::now();
        let result = self.transport.check().await;
        let took = start.elapsed();
        let (status, output) = match result {
            Ok(what) => (airwave_api::HealthStatus::Pass, what),
            Err(e) => (
                airwave_api::HealthStatus::Warn,
                format!("messages wait: {e}"),
            ),
        };
        airwave_api::HealthCheckOut {
            component_id: self.transport.name().into(),
            component_type: "component".into(),
            observed_value: Some(took.as_secs_f64() * 1000.0),
            observed_unit: Some("ms".into()),
            status,
            time: chrono::Utc::now(),
            output: Some(output),
            warn_above: None,
        }
    }
}
