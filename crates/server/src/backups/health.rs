//! Health component `backups`: the newest good backup's age in hours; warns when the backup the
//! schedule promised after it has not succeeded (an hour's grace), when none has succeeded since
//! the first one was due, or when the last finished drill failed.

use crate::clock::Clock;
use crate::db::Db;
use crate::health::HealthCheck;
use crate::with_db;
use airwave_api::{HealthCheckOut, HealthStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub struct BackupsCheck {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub schedule: Option<cron::Schedule>,
    /// When this process started: with no backup yet, the first one is due after it.
    pub since: DateTime<Utc>,
}

const GRACE: chrono::Duration = chrono::Duration::hours(1);

/// The verdict on a newest good backup (`None`: none yet) and the last drill's status.
pub fn verdict(
    schedule: Option<&cron::Schedule>,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
    last_drill: Option<&str>,
) -> (HealthStatus, Option<String>) {
    let mut problems = Vec::new();
    if let Some(s) = schedule {
        let from = newest.unwrap_or(since);
        if let Some(due) = s.after(&from).next() {
            if now > due + GRACE {
                problems.push(match newest {
                    Some(t) => format!(
                        "the newest good backup is from {}; the one due at {} has not succeeded",
                        t.format("%Y-%m-%d %H:%M UTC"),
                        due.format("%Y-%m-%d %H:%M UTC")
                    ),
                    None => format!(
                        "no backup has succeeded; the first was due at {}",
                        due.format("%Y-%m-%d %H:%M UTC")
                    ),
                });
            }
        }
    }
    if last_drill == Some("failed") {
        problems.push("the last restore drill failed".to_owned());
    }
    if problems.is_empty() {
        let note = match (schedule, newest) {
            (None, _) => Some("backups are not scheduled (AIRWAVE_BACKUP_SCHEDULE=off)".to_owned()),
            (Some(_), None) => Some("no backup yet; the first is not due yet".to_owned()),
            _ => None,
        };
        (HealthStatus::Pass, note)
    } else {
        (HealthStatus::Warn, Some(problems.join("; ")))
    }
}

#[async_trait]
impl HealthCheck for BackupsCheck {
    fn key(&self) -> &str {
        "backups:age"
    }

    fn component_type(&self) -> &str {
        "system"
    }

    async fn check(&self) -> HealthCheckOut {
        let now = self.clock.now();
        let read: Result<(Option<DateTime<Utc>>, Option<String>), sqlx::Error> = async {
            Ok(with_db!(&self.db, pool => {
                let newest: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT started_at FROM backups WHERE status = 'succeeded' ORDER BY started_at DESC LIMIT 1").fetch_optional(pool).await?.flatten();
                let drill: Option<String> = sqlx::query_scalar("SELECT status FROM backup_drills WHERE status IN ('passed', 'failed') ORDER BY finished_at DESC LIMIT 1").fetch_optional(pool).await?;
                (newest, drill)
            }))
        }
        .await;
        let (status, value, output) = match read {
            Ok((newest, drill)) => {
                let (status, output) = verdict(
                    self.schedule.as_ref(),
                    now,
                    self.since,
                    newest,
                    drill.as_deref(),
                );
                let hours =
                    newest.map(|t| ((now - t).num_minutes() as f64 / 60.0 * 10.0).round() / 10.0);
                (status, hours, output)
            }
            Err(e) => (
                HealthStatus::Fail,
                None,
                Some(format!("cannot read the backups: {e}")),
            ),
        };
        HealthCheckOut {
            component_id: "backups".into(),
            component_type: self.component_type().into(),
            observed_value: value,
            observed_unit: Some("h".into()),
            status,
            time: now,
            output,
            warn_above: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn an_overdue_backup_or_a_failed_drill_warns() {
        let daily = crate::backups::settings::parse_schedule("0 3 * * *").unwrap();
        let t = |d, h| Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
        let v = |now, newest, drill| verdict(Some(&daily), now, t(1, 0), newest, drill).0;
        assert_eq!(
            v(t(2, 3), Some(t(1, 3)), Some("passed")),
            HealthStatus::Pass,
            "today's is within its grace"
        );
        assert_eq!(
            v(t(2, 5), Some(t(1, 3)), Some("passed")),
            HealthStatus::Warn,
            "today's is overdue"
        );
        assert_eq!(
            v(t(2, 5), Some(t(2, 3)), Some("failed")),
            HealthStatus::Warn,
            "the drill failed"
        );
        assert_eq!(v(t(1, 2), None, None), HealthStatus::Pass, "none due yet");
        assert_eq!(
            v(t(1, 5), None, None),
            HealthStatus::Warn,
            "the first is overdue"
        );
        assert_eq!(
            verdict(None, t(9, 0), t(1, 0), None, None).0,
            HealthStatus::Pass
        );
    }
}
