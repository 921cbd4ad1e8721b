//! Health: `/api/health/live` touches nothing; `/api/health` runs every registered check (each
//! with a time limit) and answers `application/health+json` (draft-inadarei-api-health-check):
//! 200 for pass/warn, 503 for fail. Features add their components to the [`HealthRegistry`].

pub mod routes;

use crate::db::Db;
use airwave_api::{HealthCheckOut, HealthStatus};
use async_trait::async_trait;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One component's check. `key` is `component:measurement` (e.g. `database:responseTime`).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    fn key(&self) -> &str;
    fn component_type(&self) -> &str;
    async fn check(&self) -> HealthCheckOut;
}

pub struct HealthRegistry {
    checks: Vec<Arc<dyn HealthCheck>>,
    started: Instant,
    timeout: Duration,
}

impl HealthRegistry {
    pub fn new(timeout: Duration) -> Self {
        Self {
            checks: Vec::new(),
            started: Instant::now(),
            timeout,
        }
    }

    pub fn register(&mut self, check: Arc<dyn HealthCheck>) {
        self.checks.push(check);
    }

    /// Runs every check concurrently; a check that does not answer in time fails.
    pub async fn run(&self) -> (HealthStatus, BTreeMap<String, Vec<HealthCheckOut>>) {
        let runs = self.checks.iter().map(|c| {
            let c = c.clone();
            let timeout = self.timeout;
            async move {
                let out = match tokio::time::timeout(timeout, c.check()).await {
                    Ok(out) => out,
                    Err(_) => HealthCheckOut {
                        component_id: c.key().split(':').next().unwrap_or_default().to_owned(),
                        component_type: c.component_type().to_owned(),
                        observed_value: None,
                        observed_unit: None,
                        status: HealthStatus::Fail,
                        time: Utc::now(),
                        output: Some(format!("no answer within {} ms", timeout.as_millis())),
                        warn_above: None,
                    },
                };
                (c.key().to_owned(), out)
            }
        });
        let results = futures_util::future::join_all(runs).await;
        let mut checks: BTreeMap<String, Vec<HealthCheckOut>> = BTreeMap::new();
        let mut overall = HealthStatus::Pass;
        for (key, out) in results {
            overall = worst(overall, out.status);
            checks.entry(key).or_default().push(out);
        }
        checks
            .entry("uptime".into())
            .or_default()
            .push(HealthCheckOut {
                component_id: "airwave-server".into(),
                component_type: "system".into(),
                observed_value: Some(self.started.elapsed().as_secs() as f64),
                observed_unit: Some("s".into()),
                status: HealthStatus::Pass,
                time: Utc::now(),
                output: None,
                warn_above: None,
            });
        (overall, checks)
    }
}

fn worst(a: HealthStatus, b: HealthStatus) -> HealthStatus {
    use HealthStatus::*;
    match (a, b) {
        (Fail, _) | (_, Fail) => Fail,
        (Warn, _) | (_, Warn) => Warn,
        _ => Pass,
    }
}

/// The job queue's backend (the database or Redis): one cheap read. Warn above `warn_after`.
pub struct QueueCheck {
    pub queue: Arc<dyn crate::queue::JobQueue>,
    pub warn_after: Duration,
}

#[async_trait]
impl HealthCheck for QueueCheck {
    fn key(&self) -> &str {
        "queue:responseTime"
    }

    fn component_type(&self) -> &str {
        "component"
    }

    async fn check(&self) -> HealthCheckOut {
        let start = Instant::now();
        let took = self
            .queue
            .is_paused("render")
            .await
            .map(|_| start.elapsed());
        response_time(
            self.queue.backend(),
            self.component_type(),
            took,
            self.warn_after,
        )
    }
}

/// The database: one round trip. Warn above `warn_after`.
pub struct DatabaseCheck {
    pub db: Db,
    pub warn_after: Duration,
}

#[async_trait]
impl HealthCheck for DatabaseCheck {
    fn key(&self) -> &str {
        "database:responseTime"
    }

    fn component_type(&self) -> &str {
        "datastore"
    }

    async fn check(&self) -> HealthCheckOut {
        let took = self.db.ping().await;
        response_time(self.db.kind(), self.component_type(), took, self.warn_after)
    }
}

/// A response-time check's result: fail on an error, warn above `warn_after`, the time in ms.
pub(crate) fn response_time(
    component_id: &str,
    component_type: &str,
    took: Result<Duration, impl std::fmt::Display>,
    warn_after: Duration,
) -> HealthCheckOut {
    let (status, value, output) = match took {
        Ok(d) if d > warn_after => (
            HealthStatus::Warn,
            Some(d),
            Some(format!("slower than {} ms", warn_after.as_millis())),
        ),
        Ok(d) => (HealthStatus::Pass, Some(d), None),
        Err(e) => (HealthStatus::Fail, None, Some(e.to_string())),
    };
    HealthCheckOut {
        component_id: component_id.into(),
        component_type: component_type.into(),
        observed_value: value.map(|d| (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0),
        observed_unit: Some("ms".into()),
        status,
        time: Utc::now(),
        output,
        warn_above: Some(warn_after.as_secs_f64() * 1000.0),
    }
}

/// The health feature: `/api/health/live`, `/api/health` and the database's component.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "health"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn health_checks(&self, b: &crate::feature::Backends) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(DatabaseCheck {
            db: b.db.clone(),
            warn_after: Duration::from_millis(250),
        })]
    }
}
