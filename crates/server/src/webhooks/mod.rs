//! Outgoing webhooks, following the Standard Webhooks specification (v1); see
//! `docs/webhooks.md`.
//!
//! - `catalogue.rs`: the event types, their payloads' JSON Schemas, and the body
//!   `{type, timestamp, data}` an outbox event becomes;
//! - `endpoints.rs`: endpoints per client (CRUD, validation through the SSRF guard, health
//!   score, secret rotation with overlap);
//! - `fanout.rs`: the event consumer — one committed event becomes one message per matching
//!   endpoint of its client;
//! - `deliver.rs`: the `webhook` queue's jobs — one signed attempt per job, the retry schedule,
//!   `Retry-After`, `410 Gone`, the circuit breaker and its probe, disabling after a period of
//!   failure; test sends;
//! - `messages.rs`: an endpoint's messages and their attempts, replaying one message, and
//!   recovering an endpoint's failed messages since T (a job with progress);
//! - `signing.rs`: signatures and secrets; `routes.rs`: the HTTP API (client members under
//!   `/api/webhooks/…`, staff under `/api/ops/webhooks/…`).
//!
//! The SSRF guard every request goes through is `crate::outbound`.

pub mod bench;
pub mod catalogue;
pub mod deliver;
pub mod endpoints;
pub mod fanout;
pub mod messages;
pub mod routes;
pub mod signing;

use std::sync::Arc;

/// The webhooks feature: its routes, settings, the fan-out consumer and the `webhook` queue's
/// worker.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn consumers(&self, b: &crate::feature::Backends) -> Vec<Arc<dyn crate::events::Consumer>> {
        vec![Arc::new(fanout::Fanout {
            db: b.db.clone(),
            clock: b.clock.clone(),
            queue: b.queue.clone(),
            config: b.config.webhooks.clone(),
        })]
    }

    fn tasks(&self, s: &crate::state::AppState) -> Vec<crate::feature::Task> {
        use crate::feature::{Runs, Task, SHUTDOWN_GRACE};
        let deliverer = match deliver::Deliverer::from_state(s) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                tracing::error!(error = %e, "the webhook worker cannot start: no HTTP client");
                return Vec::new();
            }
        };
        let worker = Arc::new(
            crate::queue::worker::Worker::for_queue(
                s.queue.clone(),
                deliver::QUEUE,
                s.config.queue.lease,
            )
            .handle(deliver::KIND_DELIVER, deliverer.clone())
            .handle(deliver::KIND_PROBE, deliverer.clone())
            .handle(deliver::KIND_BATCH, deliverer.clone())
            .handle(
                messages::RECOVER_KIND,
                Arc::new(messages::RecoverJob(deliverer)),
            ),
        );
        tracing::info!(
            worker = worker.id(),
            queue = deliver::QUEUE,
            "webhook worker ready"
        );
        let (db, queue, clock) = (s.db.clone(), s.queue.clone(), s.clock.clone());
        vec![
            Task::new("webhook-worker", Runs::Workers, move |stop| {
                worker.clone().run_until_stopped(stop, SHUTDOWN_GRACE)
            }),
            // Every minute: jobs for messages and probes an outage left without one.
            Task::new("webhook-repair", Runs::Workers, move |stop| {
                let (db, queue, clock) = (db.clone(), queue.clone(), clock.clone());
                async move {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                        }
                        match deliver::repair(&db, &*queue, &*clock, chrono::Duration::minutes(5))
                            .await
                        {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(jobs = n, "webhook repair: jobs given back"),
                            Err(e) => tracing::warn!(error = %e, "webhook repair failed"),
                        }
                    }
                }
            }),
        ]
    }
}

/// The webhooks' settings: the SSRF guard's exceptions, the retry schedule, the circuit
/// breaker, rotation overlap and bounds.
pub mod settings {
    use crate::config::settings::{Kind, Reader, Section, Setting};
    use crate::outbound::Allowed;
    use std::net::SocketAddr;
    use std::time::Duration;

    pub const ALLOW_HOSTS: Setting = Setting::new(
        "AIRWAVE_WEBHOOK_ALLOW_HOSTS",
        Kind::Custom {
            default: "none",
            values: "comma-separated host names (`*.example.com`), IP addresses and CIDR networks",
            secret: false,
        },
        "Exceptions to the webhooks' SSRF guard, for development and tests: these names are not checked, and addresses in these networks are allowed although they are not public.",
    );
    pub const DNS_SERVER: Setting = Setting::new(
        "AIRWAVE_WEBHOOK_DNS_SERVER",
        Kind::Custom {
            default: "the system's resolver",
            values: "`ip:port` of a name server",
            secret: false,
        },
        "The name server endpoints' host names are resolved with (every answer goes through the SSRF guard).",
    );
    pub const RETRY_SCHEDULE: Setting = Setting::new(
        "AIRWAVE_WEBHOOK_RETRY_SCHEDULE",
        Kind::Custom {
            default: "`1m,10m` (3 attempts)",
            values: "comma-separated waits before each retry (`5s,5m,30m,2h,5h,10h`), each 1 s to 24 h, at most 20; or `none` (one attempt)",
            secret: false,
        },
        "The waits between a message's attempts: one attempt more than waits. A `Retry-After` of a 429 or 503 answer is honoured when it is longer (up to 24 h).",
    );
    pub const TIMEOUT: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_TIMEOUT_SECS",
        30,
        1,
        50,
        "s",
        "One attempt's time limit (connect, send, answer); below the `webhook` queue's 60 s job timeout, so an attempt that runs out is recorded.",
    );
    pub const MAX_PAYLOAD_KIB: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_MAX_PAYLOAD_KIB",
        256,
        1,
        4096,
        "KiB",
        "The largest body a message may have; a larger event is recorded as a failed message (`payload_too_large`).",
    );
    pub const ROTATION_OVERLAP_HOURS: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_ROTATION_OVERLAP_HOURS",
        24,
        0,
        720,
        "h",
        "After a secret rotation, deliveries are signed with the previous secret too for this long.",
    );
    pub const CIRCUIT_FAILURES: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_CIRCUIT_FAILURES",
        5,
        1,
        1000,
        "",
        "Consecutive failed attempts after which an endpoint's circuit opens: its deliveries wait (held, not lost) and one probe tries again later.",
    );
    pub const CIRCUIT_COOLDOWN_SECS: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_CIRCUIT_COOLDOWN_SECS",
        60,
        1,
        3600,
        "s",
        "How long an open circuit waits before its probe; doubled each time the probe fails, up to an hour.",
    );
    pub const DISABLE_AFTER_HOURS: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_DISABLE_AFTER_HOURS",
        120,
        1,
        2160,
        "h",
        "An endpoint that has failed (without a success) for this long is disabled; its client's members are told by e-mail and operators on the live stream.",
    );
    pub const MAX_ENDPOINTS: Setting = Setting::int(
        "AIRWAVE_WEBHOOK_MAX_ENDPOINTS",
        50,
        1,
        1000,
        "",
        "The most endpoints one client may have.",
    );

    pub fn section() -> Section {
        Section {
            title: "Outgoing webhooks",
            intro: "Signed deliveries (Standard Webhooks v1) of committed events to clients' endpoints, on the `webhook` queue (see [webhooks.md](webhooks.md)).",
            settings: vec![
                ALLOW_HOSTS,
                DNS_SERVER,
                RETRY_SCHEDULE,
                TIMEOUT,
                MAX_PAYLOAD_KIB,
                ROTATION_OVERLAP_HOURS,
                CIRCUIT_FAILURES,
                CIRCUIT_COOLDOWN_SECS,
                DISABLE_AFTER_HOURS,
                MAX_ENDPOINTS,
            ],
        }
    }

    #[derive(Debug, Clone)]
    pub struct WebhookConfig {
        pub allow: Vec<Allowed>,
        pub production: bool,
        pub dns_server: Option<SocketAddr>,
        /// The waits before each retry.
        pub schedule: Vec<Duration>,
        pub timeout: Duration,
        pub max_payload_bytes: usize,
        pub rotation_overlap: Duration,
        pub circuit_failures: i32,
        pub circuit_cooldown: Duration,
        pub disable_after: Duration,
        pub max_endpoints: i64,
    }

    impl WebhookConfig {
        /// Attempts a message gets in one round (first delivery, replay or recovery).
        pub fn attempts(&self) -> i32 {
            i32::try_from(self.schedule.len()).unwrap_or(20) + 1
        }

        pub fn guard(&self) -> crate::outbound::Guard {
            crate::outbound::Guard::new(self.allow.clone(), self.production)
        }

        pub fn read(r: &mut Reader, production: bool) -> Self {
            let allow = match r
                .raw(&ALLOW_HOSTS.name)
                .map(crate::outbound::parse_allow_list)
            {
                None => Vec::new(),
                Some(Ok(a)) => a,
                Some(Err(e)) => {
                    r.error(format!("{}: {e}", ALLOW_HOSTS.name));
                    Vec::new()
                }
            };
            let dns_server = r.raw(&DNS_SERVER.name).and_then(|v| match v.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    r.error(format!(
                        "{} must be ip:port, like 127.0.0.1:53",
                        DNS_SERVER.name
                    ));
                    None
                }
            });
            let schedule = match parse_schedule(r.raw(&RETRY_SCHEDULE.name).unwrap_or("1m,10m")) {
                Ok(s) => s,
                Err(e) => {
                    r.error(format!("{}: {e}", RETRY_SCHEDULE.name));
                    Vec::new()
                }
            };
            let secs = |v: i64| Duration::from_secs(u64::try_from(v).unwrap_or(0));
            Self {
                allow,
                production,
                dns_server,
                schedule,
                timeout: secs(r.int(&TIMEOUT)),
                max_payload_bytes: usize::try_from(r.int(&MAX_PAYLOAD_KIB)).unwrap_or(256) << 10,
                rotation_overlap: secs(r.int(&ROTATION_OVERLAP_HOURS) * 3600),
                circuit_failures: i32::try_from(r.int(&CIRCUIT_FAILURES)).unwrap_or(5),
                circuit_cooldown: secs(r.int(&CIRCUIT_COOLDOWN_SECS)),
                disable_after: secs(r.int(&DISABLE_AFTER_HOURS) * 3600),
                max_endpoints: r.int(&MAX_ENDPOINTS),
            }
        }
    }

    /// Why a retry schedule does not parse.
    #[derive(Debug, thiserror::Error)]
    pub enum ScheduleError {
        #[error("`{0}` is not a number with s, m or h")]
        NotANumber(String),
        #[error("`{0}` needs a unit: s, m or h")]
        NoUnit(String),
        #[error("`{0}` must be 1 s to 24 h")]
        OutOfRange(String),
        #[error("at most 20 waits")]
        TooMany,
    }

    /// `5s,5m,2h`: waits of 1 s to 24 h, at most 20; `none`: one attempt only.
    pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, ScheduleError> {
        let mut out = Vec::new();
        if text.trim() == "none" {
            return Ok(out);
        }
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, unit) = part.split_at(
                part.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(part.len()),
            );
            let n: u64 = n
                .parse()
                .map_err(|_| ScheduleError::NotANumber(part.to_owned()))?;
            let secs = match unit {
                "s" => n,
                "m" => n.saturating_mul(60),
                "h" => n.saturating_mul(3600),
                _ => return Err(ScheduleError::NoUnit(part.to_owned())),
            };
            if !(1..=86_400).contains(&secs) {
                return Err(ScheduleError::OutOfRange(part.to_owned()));
            }
            out.push(Duration::from_secs(secs));
        }
        if out.len() > 20 {
            return Err(ScheduleError::TooMany);
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn schedules_parse_and_refuse_nonsense() {
            let s = super::parse_schedule("5s, 5m,2h").unwrap();
            assert_eq!(
                s.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
                [5, 300, 7200]
            );
            assert!(super::parse_schedule("none").unwrap().is_empty());
            for bad in ["5", "5d", "0s", "25h", "x", "-1s"] {
                assert!(super::parse_schedule(bad).is_err(), "{bad}");
            }
        }
    }
}
