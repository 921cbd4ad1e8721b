//! The background checker: runs the health registry every interval, records each component's
//! result in `health_samples` (the history the charts read), appends `health.changed` to the
//! stream when a component's status differs from its last recorded one, and appends queue counts
//! (`queue.stats`) every few seconds. It also keeps the log and the history bounded.
//!
//! The previous status is read from the database, not memory, so several instances checking the
//! same deployment agree on what changed (a flap seen by two instances at once may be announced
//! twice; nothing is missed).

use super::log;
use crate::clock::Clock;
use crate::db::Db;
use crate::health::HealthRegistry;
use crate::queue::QueueAdmin;
use crate::with_db;
use airwave_api::{ops_event, HealthChangedEvent, HealthStatus, QueueStatsEvent, QueueStatsItem};
use chrono::Duration as ChronoDuration;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Checker {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub health: Arc<HealthRegistry>,
    pub queue: Arc<dyn QueueAdmin>,
    /// How often the health registry runs.
    pub every: Duration,
    /// How often queue counts go out.
    pub stats_every: Duration,
    /// Events kept in the replay log (also never older than a day).
    pub keep_events: i64,
    /// How long health samples are kept.
    pub keep_history: ChronoDuration,
    /// Woken after every append, so this instance's streams send at once.
    pub appended: Arc<tokio::sync::Notify>,
}

pub fn status_str(s: HealthStatus) -> &'static str {
    match s {
        HealthStatus::Pass => "pass",
        HealthStatus::Warn => "warn",
        HealthStatus::Fail => "fail",
    }
}

pub fn status_of(s: &str) -> Option<HealthStatus> {
    match s {
        "pass" => Some(HealthStatus::Pass),
        "warn" => Some(HealthStatus::Warn),
        "fail" => Some(HealthStatus::Fail),
        _ => None,
    }
}

impl Checker {
    /// Runs every check once; returns how many components changed status.
    pub async fn check_once(&self) -> Result<usize, sqlx::Error> {
        let (_, checks) = self.health.run().await;
        let now = self.clock.now();
        let mut changed = 0;
        for (key, outs) in checks {
            // The process's own uptime is not a component of the deployment.
            if key == "uptime" {
                continue;
            }
            let Some(out) = outs.first() else { continue };
            let value = out.observed_value;
            let previous: Option<String> = with_db!(&self.db, pool => {
                sqlx::query_scalar("SELECT status FROM health_samples WHERE component = $1 ORDER BY at DESC LIMIT 1")
                    .bind(&key)
                    .fetch_optional(pool)
                    .await?
            });
            let previous = previous.as_deref().and_then(status_of);
            with_db!(&self.db, pool => {
                sqlx::query("INSERT INTO health_samples (component, at, status, observed_value, observed_unit, output) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                    .bind(&key)
                    .bind(now)
                    .bind(status_str(out.status))
                    .bind(value)
                    .bind(&out.observed_unit)
                    .bind(&out.output)
                    .execute(pool)
                    .await?;
            });
            if previous != Some(out.status) {
                changed += 1;
                let event = HealthChangedEvent {
                    component: key.clone(),
                    status: out.status,
                    previous,
                    observed_value: value,
                    observed_unit: out.observed_unit.clone(),
                    output: out.output.clone(),
                    time: now,
                };
                log::append(&self.db, now, ops_event::HEALTH_CHANGED, &event).await?;
                tracing::info!(component = %key, status = status_str(out.status), "health changed");
            }
        }
        if changed > 0 {
            self.appended.notify_waiters();
        }
        Ok(changed)
    }

    /// Appends every queue's counts.
    pub async fn stats_once(&self) -> anyhow::Result<()> {
        let names = crate::queue::all_queue_names(self.queue.as_ref()).await?;
        let mut queues = Vec::with_capacity(names.len());
        for name in names {
            let c = self.queue.counts(&name).await?;
            queues.push(QueueStatsItem {
                paused: self.queue.is_paused(&name).await?,
                name,
                counts: c.into(),
            });
        }
        let now = self.clock.now();
        let event = QueueStatsEvent { queues, time: now };
        log::append(&self.db, now, ops_event::QUEUE_STATS, &event).await?;
        self.appended.notify_waiters();
        Ok(())
    }

    async fn prune(&self) -> Result<(), sqlx::Error> {
        let now = self.clock.now();
        log::prune(&self.db, self.keep_events, now - ChronoDuration::hours(24)).await?;
        let before = now - self.keep_history;
        with_db!(&self.db, pool => {
            sqlx::query("DELETE FROM health_samples WHERE at < $1").bind(before).execute(pool).await?;
        });
        Ok(())
    }

    /// Checks every `every`, sends queue stats every `stats_every`, prunes every ten minutes.
    pub async fn run_until_stopped(self, stop: CancellationToken) {
        let mut check = tokio::time::interval(self.every);
        let mut stats = tokio::time::interval(self.stats_every);
        let mut prune = tokio::time::interval(Duration::from_secs(600));
        for i in [&mut check, &mut stats, &mut prune] {
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = check.tick() => {
                    if let Err(e) = self.check_once().await {
                        tracing::warn!(error = %e, "recording health checks failed");
                    }
                }
                _ = stats.tick() => {
                    if let Err(e) = self.stats_once().await {
                        tracing::warn!(error = %format!("{e:#}"), "recording queue stats failed");
                    }
                }
                _ = prune.tick() => {
                    if let Err(e) = self.prune().await {
                        tracing::warn!(error = %e, "pruning the ops log failed");
                    }
                }
            }
        }
    }
}
