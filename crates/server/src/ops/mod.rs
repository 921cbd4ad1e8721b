//! The operations backbone the console lives on: a background health checker that records each
//! component's results over time, and the live stream of operations events (`GET /api/ops/stream`,
//! Server-Sent Events) with a replay log in the database.
//!
//! Every event is a row of `ops_events` first; the stream reads the log, so a client resumes with
//! `Last-Event-ID` after a reconnect, a server restart or on another instance, and a slow client
//! only slows its own reads (nothing is buffered for it). Later features (alerts, deliveries,
//! backups) add their event types to the same log.

pub mod checker;
pub mod log;
pub mod routes;
pub mod streams;

use crate::db::Db;
use crate::feature::{Routes, Runs, Task};
use crate::state::AppState;
use std::sync::Arc;

/// How a feature puts an event on the operations stream: appended to the replay log, and this
/// instance's open streams woken (other instances' streams find it on their next poll).
#[derive(Clone)]
pub struct Publisher {
    db: Db,
    appended: Arc<tokio::sync::Notify>,
}

impl Publisher {
    pub fn new(db: Db, appended: Arc<tokio::sync::Notify>) -> Self {
        Self { db, appended }
    }

    /// Publishes one event. A failure is logged, never passed on: the stream is for watching,
    /// and what it shows is also in the feature's own tables.
    pub async fn publish(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        kind: &str,
        data: &impl serde::Serialize,
    ) {
        match log::append(&self.db, now, kind, data).await {
            Ok(_) => self.appended.notify_waiters(),
            Err(e) => tracing::warn!(kind, error = %e, "could not append to the operations stream"),
        }
    }
}

/// The operations feature: the live stream and health history routes, and the background checker
/// that feeds them (in every role: the log is shared).
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "ops"
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn routes(&self) -> Routes {
        routes::routes()
    }

    fn tasks(&self, s: &AppState) -> Vec<Task> {
        let checker = checker::Checker {
            db: s.db.clone(),
            clock: s.clock.clone(),
            health: s.health.clone(),
            queue: s.queue.clone(),
            every: s.config.ops.check_interval,
            stats_every: s.config.ops.stats_interval,
            keep_events: s.config.ops.stream_keep,
            keep_history: s.config.ops.history_keep,
            appended: s.ops_appended.clone(),
        };
        vec![Task::new("health-checker", Runs::EveryRole, move |stop| {
            checker.clone().run_until_stopped(stop)
        })]
    }
}

/// The operations stream's and health history's settings.
pub mod settings {
    use crate::config::settings::{Reader, Section, Setting};
    use std::time::Duration;

    /// The operations stream's and health history's section of the configuration.
    #[derive(Debug, Clone)]
    pub struct OpsConfig {
        pub check_interval: Duration,
        pub stats_interval: Duration,
        pub stream_keep: i64,
        pub history_keep: chrono::Duration,
        pub stream_reauth: Duration,
        pub streams_per_user: usize,
        pub streams_max: usize,
    }

    impl OpsConfig {
        pub fn read(r: &mut Reader) -> Self {
            Self {
                check_interval: r.millis(&CHECK_INTERVAL),
                stats_interval: r.millis(&STATS_INTERVAL),
                stream_keep: r.int(&STREAM_KEEP),
                history_keep: chrono::Duration::days(r.int(&HISTORY_DAYS)),
                stream_reauth: r.secs(&STREAM_REAUTH),
                streams_per_user: usize::try_from(r.int(&STREAMS_PER_USER)).unwrap_or(5),
                streams_max: usize::try_from(r.int(&STREAMS_MAX)).unwrap_or(500),
            }
        }
    }

    pub const CHECK_INTERVAL: Setting = Setting::millis(
        "AIRWAVE_HEALTH_CHECK_INTERVAL_MS",
        10_000,
        50,
        3_600_000,
        "How often every health check runs in the background (history, `health.changed`; see [ops-stream.md](ops-stream.md)).",
    );
    pub const STATS_INTERVAL: Setting = Setting::millis(
        "AIRWAVE_OPS_STATS_INTERVAL_MS",
        5_000,
        50,
        3_600_000,
        "How often queue counts go on the operations stream.",
    );
    pub const STREAM_KEEP: Setting = Setting::int(
        "AIRWAVE_OPS_STREAM_KEEP",
        10_000,
        100,
        1_000_000,
        "events",
        "Events kept for resuming the stream (and none older than 24 hours).",
    );
    pub const HISTORY_DAYS: Setting = Setting::int(
        "AIRWAVE_HEALTH_HISTORY_DAYS",
        7,
        1,
        90,
        "days",
        "How long health check results are kept.",
    );

    pub const STREAM_REAUTH: Setting = Setting::int(
        "AIRWAVE_OPS_STREAM_REAUTH_S",
        30,
        1,
        300,
        "s",
        "How often an open stream checks its token again (and at once when this instance revokes a credential or changes a role); a stream whose token no longer may watch ends.",
    );
    pub const STREAMS_PER_USER: Setting = Setting::int(
        "AIRWAVE_OPS_STREAMS_PER_USER",
        5,
        1,
        100,
        "streams",
        "Streams one user may keep open on one instance; more are `429 too_many_streams`.",
    );
    pub const STREAMS_MAX: Setting = Setting::int(
        "AIRWAVE_OPS_STREAMS_MAX",
        500,
        1,
        100_000,
        "streams",
        "Streams one instance keeps open in all.",
    );

    pub fn section() -> Section {
        Section {
            title: "Operations stream and health history",
            intro: "",
            settings: vec![
                CHECK_INTERVAL,
                STATS_INTERVAL,
                STREAM_KEEP,
                HISTORY_DAYS,
                STREAM_REAUTH,
                STREAMS_PER_USER,
                STREAMS_MAX,
            ],
        }
    }
}
