//! The transactional outbox and its consumers. A domain change and the event announcing it are
//! written in one transaction, so nothing is announced that was not committed and nothing
//! committed is lost. Features register [`Consumer`]s with the event types they take; the
//! [`dispatcher`] hands every committed event to each of them (see its doc for the guarantees),
//! reading the outbox in commit order ([`outbox`]).

/// Event type names. Webhook subscribers see these, so they never change meaning.
pub mod types {
    pub const USER_REGISTERED: &str = "user.registered";
    pub const CLIENT_CREATED: &str = "client.created";
    pub const ASSET_CREATED: &str = "asset.created";
    pub const ASSET_UPDATED: &str = "asset.updated";
    pub const ASSET_DELETED: &str = "asset.deleted";
    pub const CAMPAIGN_CREATED: &str = "campaign.created";
    pub const MATRIX_CREATED: &str = "matrix.created";
    pub const EXECUTION_CREATED: &str = "execution.created";
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    pub const APPROVAL_RECEIVED: &str = "approval.received";
    pub const RENDER_STARTED: &str = "render.started";
    pub const RENDER_COMPLETED: &str = "render.completed";
    pub const RENDER_FAILED: &str = "render.failed";
    pub const JOB_DEAD: &str = "job.dead";
    /// A campaign export finished: its archive can be downloaded.
    pub const EXPORT_READY: &str = "export.ready";
    /// A webhook endpoint was disabled for failing (or a 410 Gone): its client's members are
    /// told by e-mail.
    pub const WEBHOOK_ENDPOINT_DISABLED: &str = "webhook.endpoint_disabled";
    /// A message was recorded for sending (internal: the e-mail feature sends it).
    pub const EMAIL_QUEUED: &str = "email.queued";
}

pub mod dispatcher;
pub mod health;
pub mod outbox;
pub mod routes;

pub use dispatcher::{Consumer, Delivery, DeliveryError, Dispatcher};
pub use outbox::{Event, Position};

/// Inserts an event into the outbox on the given connection (a transaction's, as a rule).
/// `$conn` is `&mut *tx`; `$payload` is a `serde_json::Value`.
#[macro_export]
macro_rules! emit_event {
    ($conn:expr, $now:expr, $type:expr, $subject:expr, $payload:expr) => {
        sqlx::query("INSERT INTO events (id, type, subject_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind($crate::ids::EventId::new($now).as_str())
            .bind($type)
            .bind($subject)
            .bind(sqlx::types::Json($payload))
            .bind($now)
            .execute($conn)
            .await
    };
}

use crate::feature::{Backends, Routes, Runs, Task};
use crate::state::AppState;
use std::sync::Arc;

/// The events feature: the dispatcher that delivers to every feature's consumers, its operator
/// routes and the `events:lag` health check.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "events"
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn routes(&self) -> Routes {
        routes::routes()
    }

    fn health_checks(&self, b: &Backends) -> Vec<Arc<dyn crate::health::HealthCheck>> {
        vec![Arc::new(health::EventLagCheck {
            db: b.db.clone(),
            clock: b.clock.clone(),
            consumers: b.consumers.to_vec(),
            warn_after: b.config.events.lag_warn,
            fail_after: b.config.events.lag_fail,
        })]
    }

    fn tasks(&self, s: &AppState) -> Vec<Task> {
        let dispatcher = Dispatcher {
            db: s.db.clone(),
            clock: s.clock.clone(),
            consumers: s.consumers.to_vec(),
            policy: dispatcher::DispatchPolicy {
                max_attempts: s.config.events.max_attempts,
                ..dispatcher::DispatchPolicy::default()
            },
            instance: crate::queue::worker::new_worker_id("events"),
        };
        vec![Task::new("event-dispatcher", Runs::Workers, move |stop| {
            let d = dispatcher.clone();
            async move {
                if let Err(e) = d.run_until_stopped(stop).await {
                    tracing::error!(error = %e, "the event dispatcher stopped");
                }
            }
        })]
    }
}

/// The event consumers' settings.
pub mod settings {
    use crate::config::settings::{Reader, Section, Setting};
    use std::time::Duration;

    /// The event consumers' section of the configuration.
    #[derive(Debug, Clone)]
    pub struct EventsConfig {
        /// The `events:lag` health check warns, then fails, past these.
        pub lag_warn: Duration,
        pub lag_fail: Duration,
        pub max_attempts: u32,
    }

    impl EventsConfig {
        pub fn read(r: &mut Reader) -> Self {
            let (lag_warn, lag_fail) = (r.secs(&LAG_WARN), r.secs(&LAG_FAIL));
            if lag_fail < lag_warn {
                r.error(format!(
                    "{} must not be below {}",
                    LAG_FAIL.name, LAG_WARN.name
                ));
            }
            Self {
                lag_warn,
                lag_fail,
                max_attempts: u32::try_from(r.int(&MAX_ATTEMPTS)).unwrap_or(8),
            }
        }
    }

    pub const LAG_WARN: Setting = Setting::int(
        "AIRWAVE_EVENTS_LAG_WARN_S",
        60,
        1,
        86_400,
        "s",
        "The `events:lag` health check warns when a consumer's oldest undelivered event is older than this (see [architecture.md](architecture.md#events-and-their-consumers)).",
    );
    pub const LAG_FAIL: Setting = Setting::int(
        "AIRWAVE_EVENTS_LAG_FAIL_S",
        900,
        1,
        86_400,
        "s",
        "… and fails above this (not below the warning).",
    );
    pub const MAX_ATTEMPTS: Setting = Setting::int(
        "AIRWAVE_EVENTS_MAX_ATTEMPTS",
        8,
        1,
        100,
        "",
        "Tries (with exponential backoff, 1 s doubling to 5 min) before a failing event is parked for an operator.",
    );

    pub fn section() -> Section {
        Section {
            title: "Events",
            intro: "",
            settings: vec![LAG_WARN, LAG_FAIL, MAX_ATTEMPTS],
        }
    }
}
