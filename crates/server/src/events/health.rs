//! The `events:lag` health check: how far behind the slowest consumer is (the age of its oldest
//! undelivered event), warning above a threshold and failing above another; a parked event makes
//! it warn at least, since it waits for an operator.

use super::dispatcher::{lag, Consumer};
use crate::clock::Clock;
use crate::db::Db;
use crate::health::HealthCheck;
use airwave_api::{HealthCheckOut, HealthStatus};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct EventLagCheck {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub consumers: Vec<Arc<dyn Consumer>>,
    pub warn_after: Duration,
    pub fail_after: Duration,
}

#[async_trait]
impl HealthCheck for EventLagCheck {
    fn key(&self) -> &str {
        "events:lag"
    }

    fn component_type(&self) -> &str {
        "component"
    }

    async fn check(&self) -> HealthCheckOut {
        let now = self.clock.now();
        let base = HealthCheckOut {
            component_id: "events".into(),
            component_type: "component".into(),
            observed_value: None,
            observed_unit: Some("s".into()),
            status: HealthStatus::Pass,
            time: now,
            output: None,
            warn_above: Some(self.warn_after.as_secs_f64()),
        };
        let lags = match lag(&self.db, self.clock.as_ref(), &self.consumers).await {
            Ok(l) => l,
            Err(e) => {
                return HealthCheckOut {
                    status: HealthStatus::Fail,
                    output: Some(format!("cannot read the consumers' positions: {e}")),
                    ..base
                }
            }
        };
        let mut worst_age = 0.0_f64;
        let mut worst_name = None;
        let mut notes = Vec::new();
        for l in &lags {
            let age = l.lag_seconds(now);
            if age >= worst_age {
                worst_age = age;
                worst_name = Some(l.name.as_str());
            }
            if l.parked > 0 {
                notes.push(format!("{}: {} parked", l.name, l.parked));
            }
        }
        let mut status = if worst_age > self.fail_after.as_secs_f64() {
            HealthStatus::Fail
        } else if worst_age > self.warn_after.as_secs_f64() || !notes.is_empty() {
            HealthStatus::Warn
        } else {
            HealthStatus::Pass
        };
        if lags.is_empty() {
            status = HealthStatus::Pass;
        }
        if worst_age > 0.0 {
            if let Some(name) = worst_name {
                notes.insert(0, format!("slowest consumer: {name}"));
            }
        }
        HealthCheckOut {
            status,
            observed_value: Some((worst_age * 10.0).round() / 10.0),
            output: (!notes.is_empty()).then(|| notes.join("; ")),
            ..base
        }
    }
}
