//! Supervised background loops. Every long-running loop of the server (the event dispatcher, the
//! health checker, the metrics flusher, each queue's worker, the schedulers) runs under a
//! [`Supervisor`]: a loop that panics or returns before shutdown is logged, restarted with
//! exponential backoff (`backon`'s schedule), and shown in `/api/health` as the `workers` component
//! — failing while it is down, warning for a while after it came back — never silently gone.

use crate::health::HealthCheck;
use airwave_api::{HealthCheckOut, HealthStatus};
use async_trait::async_trait;
use backon::BackoffBuilder as _;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one supervised loop is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopState {
    pub running: bool,
    pub restarts: u32,
    pub last_error: Option<String>,
    pub last_failure: Option<DateTime<Utc>>,
}

/// Runs loops and remembers how they fare.
#[derive(Debug)]
pub struct Supervisor {
    loops: Mutex<BTreeMap<String, LoopState>>,
    /// The first wait before a restart (doubling to `max_delay`).
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// How long a restart stays visible (the check warns) once the loop runs again.
    pub remember: chrono::Duration,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self {
            loops: Mutex::new(BTreeMap::new()),
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            remember: chrono::Duration::minutes(15),
        }
    }
}

impl Supervisor {
    fn update(&self, name: &str, f: impl FnOnce(&mut LoopState)) {
        let mut loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        f(loops.entry(name.to_owned()).or_default());
    }

    /// Every loop's state, by name.
    pub fn states(&self) -> BTreeMap<String, LoopState> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `make()` in `set` until `stop`, restarting it whenever it panics or returns early.
    pub fn spawn<F, Fut>(
        self: &Arc<Self>,
        set: &mut tokio::task::JoinSet<()>,
        name: &str,
        stop: CancellationToken,
        make: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        let name = name.to_owned();
        me.update(&name, |s| s.running = true);
        set.spawn(async move {
            let schedule = || {
                backon::ExponentialBuilder::default()
                    .with_min_delay(me.min_delay)
                    .with_max_delay(me.max_delay)
                    .with_jitter()
                    .without_max_times()
                    .build()
            };
            let mut delays = schedule();
            loop {
                me.update(&name, |s| s.running = true);
                let started = tokio::time::Instant::now();
                let result = tokio::spawn(make()).await;
                if stop.is_cancelled() {
                    me.update(&name, |s| s.running = false);
                    return;
                }
                let why = match result {
                    Ok(()) => "the loop ended before shutdown".to_owned(),
                    Err(e) if e.is_panic() => {
                        format!("panicked: {}", crate::panic_message(&*e.into_panic()))
                    }
                    Err(e) => e.to_string(),
                };
                // A loop that ran a good while before failing starts its backoff over.
                if started.elapsed() > me.max_delay {
                    delays = schedule();
                }
                let wait = delays.next().unwrap_or(me.max_delay);
                tracing::error!(task = %name, error = %why, restart_in_ms = wait.as_millis(), "a background loop failed; restarting it");
                me.update(&name, |s| {
                    s.running = false;
                    s.restarts += 1;
                    s.last_error = Some(why);
                    s.last_failure = Some(Utc::now());
                });
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }
}

/// The `workers` health component: fails while a supervised loop is down, warns while a restart
/// is recent.
pub struct WorkersCheck(pub Arc<Supervisor>);

#[async_trait]
impl HealthCheck for WorkersCheck {
    fn key(&self) -> &str {
        "workers:restarts"
    }

    fn component_type(&self) -> &str {
        "system"
    }

    async fn check(&self) -> HealthCheckOut {
        let now = Utc::now();
        let states = self.0.states();
        let mut status = HealthStatus::Pass;
        let mut notes = Vec::new();
        let mut restarts = 0;
        for (name, s) in &states {
            restarts += s.restarts;
            let recent = s.last_failure.is_some_and(|t| now - t < self.0.remember);
            if !s.running && s.restarts > 0 {
                status = HealthStatus::Fail;
                notes.push(format!(
                    "{name} is down ({}), restarting",
                    s.last_error.as_deref().unwrap_or("failed")
                ));
            } else if recent {
                if status == HealthStatus::Pass {
                    status = HealthStatus::Warn;
                }
                notes.push(format!(
                    "{name} restarted {} time(s), last: {}",
                    s.restarts,
                    s.last_error.as_deref().unwrap_or("failed")
                ));
            }
        }
        HealthCheckOut {
            component_id: "workers".into(),
            component_type: "system".into(),
            observed_value: Some(f64::from(restarts)),
            observed_unit: Some("restarts".into()),
            status,
            time: now,
            output: (!notes.is_empty()).then(|| notes.join("; ")),
            warn_above: Some(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_crashed_loop_is_restarted_and_shows_in_health() {
        let sup = Arc::new(Supervisor {
            min_delay: Duration::from_millis(300),
            ..Supervisor::default()
        });
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let stop = CancellationToken::new();
        let mut set = tokio::task::JoinSet::new();
        let r = runs.clone();
        let s = stop.clone();
        sup.spawn(&mut set, "dispatcher", stop.clone(), move || {
            let r = r.clone();
            let s = s.clone();
            async move {
                if r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    panic!("the database went away");
                }
                s.cancelled().await;
            }
        });
        let check = WorkersCheck(sup.clone());
        // Down (waiting to restart): failing, with the panic's message.
        let mut seen_fail = false;
        for _ in 0..200 {
            let out = check.check().await;
            if out.status == HealthStatus::Fail {
                assert!(out
                    .output
                    .unwrap()
                    .contains("panicked: the database went away"));
                seen_fail = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(seen_fail, "the crash never showed");
        // Restarted: running again, the restart remembered as a warning.
        for _ in 0..400 {
            if runs.load(std::sync::atomic::Ordering::SeqCst) >= 2
                && sup.states()["dispatcher"].running
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        let out = check.check().await;
        assert_eq!(out.status, HealthStatus::Warn);
        assert!(out
            .output
            .unwrap()
            .contains("dispatcher restarted 1 time(s)"));
        stop.cancel();
        while set.join_next().await.is_some() {}
        assert!(!sup.states()["dispatcher"].running);
    }
}
