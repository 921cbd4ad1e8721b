//! E-mail. Templates (`templates.rs`: subject, responsive HTML and text from typed data, branded
//! from configuration); every message recorded in the `emails` table (the e-mail log) in the same
//! transaction as the change that causes it ([`record_email_on!`]), with the links' tokens
//! replaced by references (`secrets.rs`); sent by the `email` queue's worker (`send.rs`) through
//! one transport — Resend, SMTP or the outbox folder (`transport/`); the log, resends and the
//! suppression list for support staff (`log.rs`, `routes.rs`). See `docs/email.md`.

pub mod bench;
pub mod domain;
pub mod log;
pub mod routes;
pub mod secrets;
pub mod send;
pub mod templates;
pub mod transport;
pub mod webhook;

use std::sync::Arc;

/// The e-mail feature: its routes, settings, consumers (sending, and the mails that follow
/// events), the `email` queue's worker and the `email` health component.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "email"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn consumers(&self, b: &crate::feature::Backends) -> Vec<Arc<dyn crate::events::Consumer>> {
        vec![
            Arc::new(send::QueuedConsumer {
                queue: b.queue.clone(),
                ops: b.ops.clone(),
                clock: b.clock.clone(),
            }),
            Arc::new(send::EventMails {
                db: b.db.clone(),
                clock: b.clock.clone(),
                config: b.config.clone(),
            }),
        ]
    }

    fn health_checks(
        &self,
        b: &crate::feature::Backends,
    ) -> Vec<Arc<dyn crate::health::HealthCheck>> {
        vec![Arc::new(transport::EmailCheck {
            transport: transport::from_config(&b.config.email),
        })]
    }

    fn tasks(&self, s: &crate::state::AppState) -> Vec<crate::feature::Task> {
        use crate::feature::{Runs, Task, SHUTDOWN_GRACE};
        let transport = transport::from_config(&s.config.email);
        let job = send::SendJob {
            db: s.db.clone(),
            clock: s.clock.clone(),
            transport: transport.clone(),
            config: s.config.email.clone(),
            key: s.signing_key.clone(),
            ops: s.ops(),
        };
        let worker = Arc::new(
            crate::queue::worker::Worker::for_queue(
                s.queue.clone(),
                send::QUEUE,
                s.config.queue.lease,
            )
            .handle(send::KIND, Arc::new(job)),
        );
        tracing::info!(
            worker = worker.id(),
            queue = send::QUEUE,
            transport = transport.name(),
            "e-mail worker ready"
        );
        vec![Task::new("email-worker", Runs::Workers, move |stop| {
            worker.clone().run_until_stopped(stop, SHUTDOWN_GRACE)
        })]
    }
}

/// The e-mail feature's settings: the sender, the branding every message carries, the transport
/// and the send budget.
pub mod settings {
    use crate::config::settings::{Kind, Reader, Section, Setting};
    use secrecy::SecretString;
    use std::path::{Path, PathBuf};
    use std::time::Duration;
    use url::Url;

    /// Where messages go.
    #[derive(Debug, Clone)]
    pub enum TransportConfig {
        Outbox {
            dir: PathBuf,
        },
        /// `SMTP_URL` (it may carry credentials: kept secret).
        Smtp {
            url: SecretString,
            pool: u32,
        },
        Resend {
            base: Url,
            key: SecretString,
        },
    }

    impl TransportConfig {
        pub fn name(&self) -> &'static str {
            match self {
                Self::Outbox { .. } => "outbox",
                Self::Smtp { .. } => "smtp",
                Self::Resend { .. } => "resend",
            }
        }
    }

    /// Most messages one user, or one client, causes in an hour (approval requests and
    /// invitations; account mails are bounded by their own flows).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Budget {
        pub per_user_hour: i64,
        pub per_client_hour: i64,
        /// Most messages to one address an hour that nobody signed in caused (password resets,
        /// registrations): past it they are silently not sent, so a stranger cannot mail-bomb an
        /// address and the answer still reveals nothing.
        pub per_recipient_hour: i64,
    }

    #[derive(Debug, Clone)]
    pub struct EmailConfig {
        pub from: String,
        pub branding: super::templates::Branding,
        pub transport: TransportConfig,
        pub budget: Budget,
        /// One send's time limit (connect, talk, answer).
        pub send_timeout: Duration,
        /// The signing secret of Resend's webhook (`whsec_…`, decoded); none: the endpoint is off.
        pub resend_webhook_secret: Option<secrecy::SecretSlice<u8>>,
    }

    impl EmailConfig {
        pub fn read(r: &mut Reader, public_url: &Url, data_dir: &Path, production: bool) -> Self {
            let support_url = match r.text(&SUPPORT_URL) {
                u if u.trim().is_empty() => public_url.to_string(),
                u => {
                    if !Url::parse(&u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                        r.error(format!("{} must be an http(s) URL", SUPPORT_URL.name));
                    }
                    u
                }
            };
            let from = r.text(&FROM);
            if from.parse::<lettre::message::Mailbox>().is_err() {
                r.error(format!(
                    "{} must be an address like `AIrWAVE <notifications@example.com>`",
                    FROM.name
                ));
            }
            let smtp = r.url(&SMTP_URL);
            if let Some(u) = smtp.as_ref().filter(|_| production) {
                let tls = u
                    .query_pairs()
                    .find(|(k, _)| k == "tls")
                    .map(|(_, v)| v.into_owned());
                let loopback = crate::config::settings::is_loopback(u);
                if u.scheme() == "smtp" && tls.as_deref() != Some("required") && !loopback {
                    r.error(format!(
                        "{} must use TLS in production: smtps://… or smtp://…?tls=required (the password and every link would cross the network in the clear)",
                        SMTP_URL.name
                    ));
                }
            }
            let resend_webhook_secret = r.secret(&RESEND_WEBHOOK_SECRET).and_then(|s| {
                use base64::Engine as _;
                use secrecy::ExposeSecret as _;
                let text = s.expose_secret();
                let decoded = text
                    .strip_prefix("whsec_")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .filter(|k| k.len() >= 16);
                if decoded.is_none() {
                    r.error(format!(
                        "{} must be the signing secret Resend shows for the webhook (whsec_ and base64)",
                        RESEND_WEBHOOK_SECRET.name
                    ));
                }
                decoded.map(secrecy::SecretSlice::from)
            });
            let resend_key = r.secret(&RESEND_API_KEY);
            let resend_base = r.url(&RESEND_API_URL);
            if production && resend_base.as_ref().is_some_and(|u| u.scheme() != "https") {
                r.error(format!(
                    "{} must be https:// in production",
                    RESEND_API_URL.name
                ));
            }
            let dir = r
                .raw(&OUTBOX_DIR.name)
                .map_or_else(|| data_dir.join("outbox"), PathBuf::from);
            let pool = u32::try_from(r.int(&SMTP_POOL)).unwrap_or(10);
            let chosen = r.choice(&TRANSPORT);
            let resend = |key: SecretString| TransportConfig::Resend {
                base: resend_base
                    .clone()
                    .unwrap_or_else(|| Url::parse("https://api.resend.com").expect("a URL")),
                key,
            };
            let smtp_of = |url: Url| TransportConfig::Smtp {
                url: SecretString::from(url.to_string()),
                pool,
            };
            let transport = match chosen {
                "outbox" => TransportConfig::Outbox { dir },
                "smtp" => smtp.map(smtp_of).unwrap_or_else(|| {
                    r.error(format!(
                        "{} is smtp but SMTP_URL is not set",
                        TRANSPORT.name
                    ));
                    TransportConfig::Outbox { dir }
                }),
                "resend" => resend_key.map(resend).unwrap_or_else(|| {
                    r.error(format!(
                        "{} is resend but RESEND_API_KEY is not set",
                        TRANSPORT.name
                    ));
                    TransportConfig::Outbox { dir }
                }),
                _ => match (resend_key, smtp) {
                    (Some(key), _) => resend(key),
                    (None, Some(url)) => smtp_of(url),
                    (None, None) => {
                        if production {
                            r.error(format!(
                                "production sends e-mail: set RESEND_API_KEY or SMTP_URL (or {}=outbox to keep messages in a folder)",
                                TRANSPORT.name
                            ));
                        }
                        TransportConfig::Outbox { dir }
                    }
                },
            };
            // A blank variable is an unset one: these always have their (non-empty) defaults.
            Self {
                from,
                branding: super::templates::Branding {
                    product: r.text(&PRODUCT),
                    footer: r.text(&FOOTER),
                    support_url,
                },
                transport,
                budget: Budget {
                    per_user_hour: r.int(&BUDGET_USER),
                    per_client_hour: r.int(&BUDGET_CLIENT),
                    per_recipient_hour: r.int(&BUDGET_RECIPIENT),
                },
                send_timeout: r.secs(&SEND_TIMEOUT),
                resend_webhook_secret,
            }
        }
    }

    pub const FROM: Setting = Setting::new(
        "AIRWAVE_EMAIL_FROM",
        Kind::Text { default: "AIrWAVE <notifications@airwave.app>" },
        "The sender of e-mails (its domain is the one to authenticate: see `airwave-server email check-domain`).",
    );
    pub const PRODUCT: Setting = Setting::new(
        "AIRWAVE_EMAIL_PRODUCT_NAME",
        Kind::Text { default: "AIrWAVE" },
        "The product's name in every e-mail's header and text.",
    );
    pub const FOOTER: Setting = Setting::new(
        "AIRWAVE_EMAIL_FOOTER",
        Kind::Text {
            default: "AIrWAVE · AI video ads for agencies",
        },
        "The footer line of every e-mail.",
    );
    pub const SUPPORT_URL: Setting = Setting::new(
        "AIRWAVE_EMAIL_SUPPORT_URL",
        Kind::Text { default: "" },
        "The support link in every e-mail's footer; `AIRWAVE_PUBLIC_URL` when empty.",
    );
    pub const TRANSPORT: Setting = Setting::new(
        "AIRWAVE_EMAIL_TRANSPORT",
        Kind::Choice {
            default: "auto",
            options: &["auto", "resend", "smtp", "outbox"],
        },
        "Where e-mail goes. `auto`: Resend when `RESEND_API_KEY` is set, else SMTP when `SMTP_URL` is, else the outbox folder (refused in production unless chosen explicitly).",
    );
    pub const SMTP_URL: Setting = Setting::new(
        "SMTP_URL",
        Kind::Url {
            schemes: &["smtp", "smtps"],
            default: None,
            secret: true,
        },
        "An SMTP server: `smtps://user:pass@host:465` (TLS) or `smtp://user:pass@host:587` (STARTTLS when offered; `?tls=required` insists, and production requires TLS except to a loopback relay).",
    );
    pub const SMTP_POOL: Setting = Setting::new(
        "AIRWAVE_EMAIL_SMTP_POOL",
        Kind::Int {
            default: 10,
            min: 1,
            max: 100,
            unit: "",
        },
        "Most SMTP connections one process keeps open.",
    );
    pub const RESEND_API_KEY: Setting = Setting::new(
        "RESEND_API_KEY",
        Kind::Secret { min_len: 8 },
        "Resend's API key (`re_…`): e-mail goes through Resend's API.",
    );
    pub const RESEND_WEBHOOK_SECRET: Setting = Setting::new(
        "RESEND_WEBHOOK_SECRET",
        Kind::Secret { min_len: 20 },
        "The signing secret of Resend's webhook (`whsec_…`): `POST /api/webhooks/resend` takes delivery, bounce and complaint events signed with it (Svix signatures). Unset: that endpoint answers `404`.",
    );
    pub const RESEND_API_URL: Setting = Setting::new(
        "RESEND_API_URL",
        Kind::Url {
            schemes: &["https", "http"],
            default: Some("https://api.resend.com"),
            secret: false,
        },
        "Resend's API (https:// in production).",
    );
    pub const OUTBOX_DIR: Setting = Setting::new(
        "AIRWAVE_EMAIL_OUTBOX_DIR",
        Kind::Custom {
            default: "<AIRWAVE_DATA_DIR>/outbox",
            values: "a folder",
            secret: false,
        },
        "The outbox transport's folder: every message as `<id>.eml` and `<id>.json` (owner-only: links in them work).",
    );
    pub const SEND_TIMEOUT: Setting = Setting::new(
        "AIRWAVE_EMAIL_SEND_TIMEOUT_S",
        Kind::Int {
            default: 30,
            min: 1,
            max: 50,
            unit: "s",
        },
        "One send's time limit (below the `email` queue's 60 s attempt timeout, so an attempt that runs out is recorded).",
    );
    pub const BUDGET_USER: Setting = Setting::new(
        "AIRWAVE_EMAIL_BUDGET_PER_USER_HOUR",
        Kind::Int {
            default: 50,
            min: 1,
            max: 100_000,
            unit: "",
        },
        "Most e-mails (approval requests, invitations) one user causes in an hour; more answer 429 `email_budget_exceeded`.",
    );
    pub const BUDGET_CLIENT: Setting = Setting::new(
        "AIRWAVE_EMAIL_BUDGET_PER_CLIENT_HOUR",
        Kind::Int {
            default: 200,
            min: 1,
            max: 1_000_000,
            unit: "",
        },
        "Most e-mails the members of one client cause in an hour.",
    );

    pub const BUDGET_RECIPIENT: Setting = Setting::new(
        "AIRWAVE_EMAIL_BUDGET_PER_RECIPIENT_HOUR",
        Kind::Int {
            default: 10,
            min: 1,
            max: 10_000,
            unit: "",
        },
        "Most e-mails to one address in an hour that nobody signed in caused (password resets, registration mails); more are silently not sent.",
    );

    pub fn section() -> Section {
        Section {
            title: "E-mail",
            intro: "Every message is recorded in the `emails` table (the e-mail log) in the same transaction as the change that causes it and sent by the `email` queue's workers through one transport.",
            settings: vec![
                FROM,
                PRODUCT,
                FOOTER,
                SUPPORT_URL,
                TRANSPORT,
                SMTP_URL,
                SMTP_POOL,
                RESEND_API_KEY,
                RESEND_WEBHOOK_SECRET,
                RESEND_API_URL,
                OUTBOX_DIR,
                SEND_TIMEOUT,
                BUDGET_USER,
                BUDGET_CLIENT,
                BUDGET_RECIPIENT,
            ],
        }
    }
}

/// A message about to be recorded: checked and rendered once (its subject and its text with the
/// link tokens redacted, for the log), with what caused it.
#[derive(Debug, Clone)]
pub struct NewEmail {
    pub id: crate::ids::EmailId,
    pub to: String,
    pub from: String,
    pub message_id: String,
    pub subject: String,
    /// The text part as the log shows it (tokens as `[redacted]`).
    pub text: String,
    pub message: templates::Message,
    pub secret: Option<secrets::LinkSecret>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Who caused it (the send budget), if anyone.
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The message this one sends again.
    pub resend_of: Option<String>,
    /// At most one message per key (an event consumer's delivery key).
    pub dedupe_key: Option<String>,
    pub budget: settings::Budget,
    /// Whether the per-recipient budget applies (it does unless a signed-in user or a staff
    /// member caused the message).
    pub anonymous: bool,
}

impl NewEmail {
    /// Renders `message` once: a template that cannot render its data is an error here, before
    /// anything is recorded. A link carrying a token holds [`secrets::MARKER`] in its place and
    /// comes with the `secret` that makes it again.
    pub fn new(
        config: &settings::EmailConfig,
        now: chrono::DateTime<chrono::Utc>,
        to: &crate::domain::Email,
        message: templates::Message,
        secret: Option<secrets::LinkSecret>,
    ) -> crate::error::Result<Self> {
        let rendered = templates::templates()
            .and_then(|t| t.render(&message, &config.branding))
            .map_err(|e| crate::error::Error::Internal(e.into()))?;
        let id = crate::ids::EmailId::new(now);
        Ok(Self {
            message_id: format!(
                "<{}@{}>",
                id.as_str(),
                transport::sender_domain(&config.from)
            ),
            id,
            to: to.as_str().to_owned(),
            from: config.from.clone(),
            subject: rendered.subject,
            text: secrets::redact(&rendered.text),
            message,
            secret,
            created_at: now,
            user_id: None,
            client_id: None,
            correlation_id: None,
            resend_of: None,
            dedupe_key: None,
            budget: config.budget,
            anonymous: true,
        })
    }

    /// Counts toward `user`'s and `client`'s send budget.
    #[must_use]
    pub fn caused_by(mut self, user: Option<&str>, client: Option<&str>) -> Self {
        self.user_id = user.map(str::to_owned);
        self.client_id = client.map(str::to_owned);
        self.anonymous = false;
        self
    }

    /// A staff member's (a resend) or the system's own message: no per-recipient budget.
    #[must_use]
    pub fn by_staff_or_system(mut self) -> Self {
        self.anonymous = false;
        self
    }

    #[must_use]
    pub fn correlation(mut self, id: Option<&str>) -> Self {
        self.correlation_id = id.map(str::to_owned);
        self
    }

    pub fn budget_exceeded(who: &str, limit: i64) -> crate::error::Error {
        crate::error::Error::TooMany {
            code: "email_budget_exceeded",
            detail: format!(
                "{who} sent {limit} e-mails in the last hour, the most allowed; try again later"
            ),
            retry_after: std::time::Duration::from_secs(600),
        }
    }
}

/// Records a [`NewEmail`] on a connection (inside the transaction of the change that causes it:
/// `&mut *tx`) and announces it (`email.queued`) for the sender. Refuses with
/// `email_budget_exceeded` when the user or client who caused it is over budget. Evaluates to
/// `Result<bool>`: `false` when a message with its `dedupe_key` exists already.
#[macro_export]
macro_rules! record_email_on {
    ($conn:expr, $mail:expr) => {{
        let mail: &$crate::email::NewEmail = $mail;
        async {
            let hour_ago = mail.created_at - chrono::Duration::hours(1);
            if let Some(user) = &mail.user_id {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE user_id = $1 AND created_at > $2")
                    .bind(user).bind(hour_ago).fetch_one($conn).await?;
                if n >= mail.budget.per_user_hour {
                    return Err($crate::email::NewEmail::budget_exceeded("you", mail.budget.per_user_hour));
                }
            }
            if let Some(client) = &mail.client_id {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE client_id = $1 AND created_at > $2")
                    .bind(client).bind(hour_ago).fetch_one($conn).await?;
                if n >= mail.budget.per_client_hour {
                    return Err($crate::email::NewEmail::budget_exceeded("this client's team", mail.budget.per_client_hour));
                }
            }
            if mail.anonymous {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM emails WHERE to_address = $1 AND created_at > $2 AND user_id IS NULL")
                    .bind(&mail.to).bind(hour_ago).fetch_one($conn).await?;
                if n >= mail.budget.per_recipient_hour {
                    tracing::warn!(template = mail.message.template(), "per-recipient e-mail budget reached: not sending");
                    return Ok(false);
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO emails (id, to_address, from_address, subject, template, text_body, message, secret_ref, message_id,
                                     status, attempts, user_id, client_id, correlation_id, resend_of, dedupe_key, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $12, $13, $14, $15, $15)
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .bind(mail.id.as_str())
            .bind(&mail.to)
            .bind(&mail.from)
            .bind(&mail.subject)
            .bind(mail.message.template())
            .bind(&mail.text)
            .bind(sqlx::types::Json(&mail.message))
            .bind(mail.secret.as_ref().map(sqlx::types::Json))
            .bind(&mail.message_id)
            .bind(&mail.user_id)
            .bind(&mail.client_id)
            .bind(&mail.correlation_id)
            .bind(&mail.resend_of)
            .bind(&mail.dedupe_key)
            .bind(mail.created_at)
            .execute($conn)
            .await?
            .rows_affected() == 1;
            if inserted {
                $crate::emit_event!($conn, mail.created_at, $crate::events::types::EMAIL_QUEUED, mail.id.as_str(),
                    serde_json::json!({"email_id": mail.id, "template": mail.message.template()}))?;
            }
            Ok::<bool, $crate::error::Error>(inserted)
        }
        .await
    }};
}
