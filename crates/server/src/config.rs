//! Configuration: read once at start-up from the environment into typed fields, validated all at
//! once so that one run names every missing or invalid variable. Nothing else reads `std::env`.
//!
//! Variable names follow the production-readiness plan's environment checklist, so an existing
//! deployment keeps its settings; ours are prefixed `AIRWAVE_`. Every variable is documented in
//! `docs/configuration.md`.

use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Where the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Embedded defaults are fine; missing secrets are generated and kept in the data dir.
    Development,
    /// Secrets must be given; links must be https.
    Production,
}

/// Which database, chosen by the `DATABASE_URL` scheme.
#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(Url),
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    /// The URL with any password replaced, safe to print.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => redact_url(u),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://path`; default a SQLite file in the data dir.
    pub url: DatabaseUrl,
    /// `AIRWAVE_DB_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
    /// `AIRWAVE_DB_ACQUIRE_TIMEOUT_MS` (default 5000): how long a request waits for a connection.
    pub acquire_timeout: Duration,
    /// `AIRWAVE_DB_STATEMENT_TIMEOUT_MS` (default 30000): PostgreSQL `statement_timeout`.
    pub statement_timeout: Duration,
    /// `AIRWAVE_DB_SLOW_STATEMENT_MS` (default 500): statements slower than this are logged at WARN.
    pub slow_statement: Duration,
}

/// The whole configuration. `Debug` never prints a secret.
#[derive(Clone)]
pub struct Config {
    /// `AIRWAVE_ENV`: `development` (default) or `production`.
    pub env: Environment,
    /// `AIRWAVE_BIND` (default `127.0.0.1:8080`); port 0 picks a free port.
    pub bind: SocketAddr,
    /// `AIRWAVE_DATA_DIR` (default the per-user data dir, e.g. `~/.local/share/airwave`).
    pub data_dir: PathBuf,
    /// `AIRWAVE_PUBLIC_URL`: the URL users reach this server at, used in links (approval, reset).
    /// Default `http://AIRWAVE_BIND`; required in production.
    pub public_url: Url,
    pub database: DatabaseConfig,
    /// `JWT_SECRET` (at least 32 characters). Required in production; in development a secret is
    /// generated once and kept in `DATA_DIR/jwt_secret`.
    pub jwt_secret: Option<SecretString>,
    /// `AIRWAVE_SESSION_TTL_MINUTES` (default 720): lifetime of a login.
    pub session_ttl: Duration,
    /// `AIRWAVE_REQUEST_TIMEOUT_MS` (default 30000).
    pub request_timeout: Duration,
    /// `AIRWAVE_MAX_BODY_BYTES` (default 1048576).
    pub max_body_bytes: usize,
    /// `AIRWAVE_CORS_ORIGINS`: comma-separated origins allowed to call the API from a browser.
    pub cors_origins: Vec<String>,
    /// `AIRWAVE_LOG_FORMAT`: `text` (default) or `json`.
    pub log_json: bool,
    /// `AIRWAVE_QUEUE_LEASE_MS` (default 60000): how long a worker holds a job without a
    /// heartbeat; a dead worker's jobs run again this long after it died.
    pub queue_lease: Duration,
    /// Retention of finished jobs: `AIRWAVE_QUEUE_KEEP_COMPLETED_HOURS` (default 24),
    /// `AIRWAVE_QUEUE_KEEP_COMPLETED_MAX` (default 10000 per queue), `AIRWAVE_QUEUE_KEEP_DEAD_DAYS`
    /// (default 14).
    pub retention: crate::queue::retention::Retention,
    /// Per-queue policies: `AIRWAVE_QUEUE_<NAME>_{CONCURRENCY,MAX_ATTEMPTS,BACKOFF_BASE_MS,
    /// BACKOFF_CAP_MS,RATE_PER_S,MAX_WAITING}` for each of the plan's queues (see
    /// `queue::QueuePolicy::defaults_for`).
    pub queues: std::collections::HashMap<String, crate::queue::QueuePolicy>,
    /// `AIRWAVE_QUEUE_METRICS_FLUSH_MS` (default 5000): how often a process writes its queue
    /// metrics (the console's charts lag by at most this).
    pub queue_metrics_flush: Duration,
    /// `AIRWAVE_HEALTH_CHECK_INTERVAL_MS` (default 10000): how often the background checker runs
    /// every health check (history and `health.changed` events).
    pub health_check_interval: Duration,
    /// `AIRWAVE_OPS_STATS_INTERVAL_MS` (default 5000): how often queue counts go on the stream.
    pub ops_stats_interval: Duration,
    /// `AIRWAVE_OPS_STREAM_KEEP` (default 10000): events kept for resuming (at most 24 hours).
    pub ops_stream_keep: i64,
    /// `AIRWAVE_HEALTH_HISTORY_DAYS` (default 7): how long health samples are kept.
    pub health_history_keep: chrono::Duration,
    /// `AIRWAVE_EVENTS_LAG_WARN_S` (default 60) and `AIRWAVE_EVENTS_LAG_FAIL_S` (default 900):
    /// the `events:lag` health check warns, then fails, when a consumer's oldest undelivered
    /// event is older than this.
    pub events_lag_warn: Duration,
    pub events_lag_fail: Duration,
    /// `AIRWAVE_EVENTS_MAX_ATTEMPTS` (default 8): tries before a failing event is parked.
    pub events_max_attempts: u32,
    /// `AIRWAVE_RENDER_PROVIDER`: `local` (default) or `creatomate` (needs `CREATOMATE_API_KEY`).
    pub render_provider: RenderProviderKind,
    /// `AIRWAVE_CREATOMATE_URL` (default `https://api.creatomate.com`).
    pub creatomate_url: Url,
    /// `AIRWAVE_CREATOMATE_POLL_MS` (default 2000): how often a running Creatomate render is polled.
    pub creatomate_poll: Duration,
    /// `AIRWAVE_CREATOMATE_TIMEOUT_S` (default 1800): a render not finished by then fails (and retries).
    pub creatomate_timeout: Duration,
    /// `REDIS_URL`: job queue on Redis instead of the database.
    pub redis_url: Option<SecretUrl>,
    /// `AIRWAVE_EMAIL_FROM` (default `AIrWAVE <notifications@airwave.app>`).
    pub email_from: String,
    /// `CREATOMATE_API_KEY`: render through Creatomate instead of the local renderer.
    pub creatomate_api_key: Option<SecretString>,
}

/// Variables that select a backend or feature this build does not have yet (the plan's names):
/// refused at start-up when set, so a deployment learns at once instead of running without it.
pub const NOT_YET_BUILT: &[(&str, &str)] = &[
    (
        "UPSTASH_REDIS_URL",
        "Redis rate limiter (it comes with rate limiting)",
    ),
    (
        "UPSTASH_REDIS_TOKEN",
        "Redis rate limiter (it comes with rate limiting)",
    ),
    (
        "AWS_S3_BUCKET",
        "S3 storage (it comes with storage and backups)",
    ),
    (
        "CDN_DOMAIN",
        "CDN delivery (it comes with storage and backups)",
    ),
    (
        "RESEND_API_KEY",
        "Resend e-mail transport (it comes with transactional e-mail)",
    ),
    (
        "SMTP_URL",
        "SMTP e-mail transport (it comes with transactional e-mail)",
    ),
    (
        "SENTRY_DSN",
        "server error reporting (it comes with error tracking)",
    ),
    (
        "NEXT_PUBLIC_SENTRY_DSN",
        "server error reporting (it comes with error tracking)",
    ),
    (
        "MIXPANEL_TOKEN",
        "analytics forwarding (it comes with analytics)",
    ),
    (
        "AIRWAVE_WEBHOOK_ALLOW_HOSTS",
        "outgoing webhooks (the SSRF guard's allow-list comes with them)",
    ),
];

/// Which renderer draws executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderProviderKind {
    Local,
    Creatomate,
}

/// A URL that may carry credentials: printed with them redacted.
#[derive(Clone)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

fn redact_url(u: &Url) -> String {
    let mut u = u.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("REDACTED"));
    }
    if u.query().is_some() {
        u.set_query(Some("REDACTED"));
    }
    u.to_string()
}

/// Every problem found in the environment, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads variables and collects problems instead of stopping at the first.
struct Reader<'a> {
    vars: &'a BTreeMap<String, String>,
    errors: Vec<String>,
}

impl<'a> Reader<'a> {
    /// A set, non-blank variable.
    fn get(&self, name: &str) -> Option<&'a str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn parse<T: std::str::FromStr>(&mut self, name: &str, default: T, what: &str) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.errors
                    .push(format!("{name} is `{v}`, which is not {what}"));
                default
            }),
        }
    }

    fn millis(&mut self, name: &str, default_ms: u64, min: u64, max: u64) -> Duration {
        let v: u64 = self.parse(name, default_ms, "a whole number of milliseconds");
        if !(min..=max).contains(&v) {
            self.errors.push(format!(
                "{name} must be between {min} and {max} milliseconds (got {v})"
            ));
        }
        Duration::from_millis(v)
    }

    fn secret(&mut self, name: &str) -> Option<SecretString> {
        self.get(name).map(|v| SecretString::from(v.to_owned()))
    }

    fn url(&mut self, name: &str, schemes: &[&str]) -> Option<Url> {
        let v = self.get(name)?;
        match Url::parse(v) {
            Ok(u) if schemes.contains(&u.scheme()) => Some(u),
            Ok(u) => {
                self.errors.push(format!(
                    "{name} has scheme `{}`; expected {}",
                    u.scheme(),
                    schemes
                        .iter()
                        .map(|s| format!("{s}://"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                None
            }
            Err(e) => {
                self.errors.push(format!("{name} is not a valid URL ({e})"));
                None
            }
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables; reports every problem at once.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader {
            vars,
            errors: Vec::new(),
        };

        let env = match r.get("AIRWAVE_ENV") {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                r.errors.push(format!(
                    "AIRWAVE_ENV is `{other}`; expected `development` or `production`"
                ));
                Environment::Development
            }
        };
        let production = env == Environment::Production;

        let default_bind: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let bind = r.parse(
            "AIRWAVE_BIND",
            default_bind,
            "an address like 127.0.0.1:8080",
        );

        let data_dir = match r.get("AIRWAVE_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("airwave"),
        };

        let public_url = match r.url("AIRWAVE_PUBLIC_URL", &["http", "https"]) {
            Some(u) => {
                if production && u.scheme() != "https" {
                    r.errors
                        .push("AIRWAVE_PUBLIC_URL must be an https:// URL in production".into());
                }
                u
            }
            None => {
                if production && r.get("AIRWAVE_PUBLIC_URL").is_none() {
                    r.errors.push(
                        "AIRWAVE_PUBLIC_URL is required in production (links in emails use it)"
                            .into(),
                    );
                }
                Url::parse(&format!("http://{bind}"))
                    .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8080").expect("static url"))
            }
        };

        let db_url = match r.get("DATABASE_URL") {
            None => DatabaseUrl::Sqlite(data_dir.join("airwave.db")),
            Some(v) => match parse_database_url(v) {
                Ok(u) => u,
                Err(e) => {
                    r.errors.push(format!("DATABASE_URL {e}"));
                    DatabaseUrl::Sqlite(data_dir.join("airwave.db"))
                }
            },
        };
        let max_connections: u32 = r.parse("AIRWAVE_DB_MAX_CONNECTIONS", 10, "a whole number");
        if !(1..=1000).contains(&max_connections) {
            r.errors.push(format!(
                "AIRWAVE_DB_MAX_CONNECTIONS must be between 1 and 1000 (got {max_connections})"
            ));
        }
        let database = DatabaseConfig {
            url: db_url,
            max_connections,
            acquire_timeout: r.millis("AIRWAVE_DB_ACQUIRE_TIMEOUT_MS", 5_000, 10, 600_000),
            statement_timeout: r.millis("AIRWAVE_DB_STATEMENT_TIMEOUT_MS", 30_000, 10, 3_600_000),
            slow_statement: r.millis("AIRWAVE_DB_SLOW_STATEMENT_MS", 500, 1, 3_600_000),
        };

        let jwt_secret = r.secret("JWT_SECRET");
        match &jwt_secret {
            None if production => r
                .errors
                .push("JWT_SECRET is required in production (at least 32 characters)".into()),
            Some(s) if s.expose_secret().chars().count() < 32 => r
                .errors
                .push("JWT_SECRET must be at least 32 characters long".into()),
            _ => {}
        }

        let session_minutes: u64 = r.parse(
            "AIRWAVE_SESSION_TTL_MINUTES",
            720,
            "a whole number of minutes",
        );
        if !(5..=43_200).contains(&session_minutes) {
            r.errors.push(format!(
                "AIRWAVE_SESSION_TTL_MINUTES must be between 5 and 43200 (got {session_minutes})"
            ));
        }

        let max_body_bytes: usize = r.parse(
            "AIRWAVE_MAX_BODY_BYTES",
            1024 * 1024,
            "a whole number of bytes",
        );
        if !(1024..=1024 * 1024 * 1024).contains(&max_body_bytes) {
            r.errors.push(format!(
                "AIRWAVE_MAX_BODY_BYTES must be between 1024 and 1073741824 (got {max_body_bytes})"
            ));
        }

        let mut queues = std::collections::HashMap::new();
        for name in crate::queue::QUEUES {
            let d = crate::queue::QueuePolicy::defaults_for(name);
            let var = |what: &str| format!("AIRWAVE_QUEUE_{}_{what}", name.to_uppercase());
            let concurrency: usize = r.parse(&var("CONCURRENCY"), d.concurrency, "a whole number");
            if !(1..=256).contains(&concurrency) {
                r.errors.push(format!(
                    "{} must be between 1 and 256 (got {concurrency})",
                    var("CONCURRENCY")
                ));
            }
            let max_attempts: u32 = r.parse(&var("MAX_ATTEMPTS"), d.max_attempts, "a whole number");
            if !(1..=100).contains(&max_attempts) {
                r.errors.push(format!(
                    "{} must be between 1 and 100 (got {max_attempts})",
                    var("MAX_ATTEMPTS")
                ));
            }
            let base = r.millis(
                &var("BACKOFF_BASE_MS"),
                d.backoff.base.as_millis() as u64,
                1,
                86_400_000,
            );
            let cap = r.millis(
                &var("BACKOFF_CAP_MS"),
                d.backoff.cap.as_millis() as u64,
                1,
                7 * 86_400_000,
            );
            if cap < base {
                r.errors.push(format!(
                    "{} must not be below {}",
                    var("BACKOFF_CAP_MS"),
                    var("BACKOFF_BASE_MS")
                ));
            }
            let rate: f64 = r.parse(
                &var("RATE_PER_S"),
                d.rate_per_s.unwrap_or(0.0),
                "a number of jobs per second (0: unlimited)",
            );
            if !(0.0..=1_000_000.0).contains(&rate) {
                r.errors.push(format!(
                    "{} must be between 0 (unlimited) and 1000000 (got {rate})",
                    var("RATE_PER_S")
                ));
            }
            let max_waiting: u64 = r.parse(&var("MAX_WAITING"), d.max_waiting, "a whole number");
            if !(1..=100_000_000).contains(&max_waiting) {
                r.errors.push(format!(
                    "{} must be between 1 and 100000000 (got {max_waiting})",
                    var("MAX_WAITING")
                ));
            }
            queues.insert(
                (*name).to_owned(),
                crate::queue::QueuePolicy {
                    max_waiting,
                    concurrency,
                    max_attempts,
                    backoff: crate::queue::Backoff { base, cap },
                    rate_per_s: (rate > 0.0).then_some(rate),
                },
            );
        }

        let ops_stream_keep: i64 = r.parse("AIRWAVE_OPS_STREAM_KEEP", 10_000, "a whole number");
        if !(100..=1_000_000).contains(&ops_stream_keep) {
            r.errors.push(format!(
                "AIRWAVE_OPS_STREAM_KEEP must be between 100 and 1000000 (got {ops_stream_keep})"
            ));
        }
        let history_days: i64 = r.parse("AIRWAVE_HEALTH_HISTORY_DAYS", 7, "a whole number of days");
        if !(1..=90).contains(&history_days) {
            r.errors.push(format!(
                "AIRWAVE_HEALTH_HISTORY_DAYS must be between 1 and 90 (got {history_days})"
            ));
        }

        let lag_warn_s: u64 = r.parse("AIRWAVE_EVENTS_LAG_WARN_S", 60, "a whole number of seconds");
        let lag_fail_s: u64 = r.parse(
            "AIRWAVE_EVENTS_LAG_FAIL_S",
            900,
            "a whole number of seconds",
        );
        if !(1..=86_400).contains(&lag_warn_s) || !(1..=86_400).contains(&lag_fail_s) {
            r.errors.push(format!(
                "AIRWAVE_EVENTS_LAG_WARN_S and AIRWAVE_EVENTS_LAG_FAIL_S must be between 1 and 86400 (got {lag_warn_s} and {lag_fail_s})"
            ));
        } else if lag_fail_s < lag_warn_s {
            r.errors.push(
                "AIRWAVE_EVENTS_LAG_FAIL_S must not be below AIRWAVE_EVENTS_LAG_WARN_S".into(),
            );
        }
        let events_max_attempts: u32 = r.parse("AIRWAVE_EVENTS_MAX_ATTEMPTS", 8, "a whole number");
        if !(1..=100).contains(&events_max_attempts) {
            r.errors.push(format!(
                "AIRWAVE_EVENTS_MAX_ATTEMPTS must be between 1 and 100 (got {events_max_attempts})"
            ));
        }

        let creatomate_api_key = r.secret("CREATOMATE_API_KEY");
        let render_provider = match r.get("AIRWAVE_RENDER_PROVIDER").unwrap_or("local") {
            "local" => RenderProviderKind::Local,
            "creatomate" => {
                if creatomate_api_key.is_none() {
                    r.errors.push(
                        "AIRWAVE_RENDER_PROVIDER is `creatomate` but CREATOMATE_API_KEY is not set"
                            .into(),
                    );
                }
                RenderProviderKind::Creatomate
            }
            other => {
                r.errors.push(format!(
                    "AIRWAVE_RENDER_PROVIDER is `{other}`; expected `local` or `creatomate`"
                ));
                RenderProviderKind::Local
            }
        };
        let creatomate_url = r
            .url("AIRWAVE_CREATOMATE_URL", &["http", "https"])
            .unwrap_or_else(|| Url::parse("https://api.creatomate.com").expect("a valid URL"));
        let creatomate_poll = r.millis("AIRWAVE_CREATOMATE_POLL_MS", 2_000, 10, 600_000);
        let creatomate_timeout_s: u64 = r.parse(
            "AIRWAVE_CREATOMATE_TIMEOUT_S",
            1_800,
            "a whole number of seconds",
        );
        if !(1..=86_400).contains(&creatomate_timeout_s) {
            r.errors.push(format!(
                "AIRWAVE_CREATOMATE_TIMEOUT_S must be between 1 and 86400 (got {creatomate_timeout_s})"
            ));
        }

        let keep_hours: u64 = r.parse(
            "AIRWAVE_QUEUE_KEEP_COMPLETED_HOURS",
            24,
            "a whole number of hours",
        );
        let keep_max: u64 = r.parse("AIRWAVE_QUEUE_KEEP_COMPLETED_MAX", 10_000, "a whole number");
        let keep_dead_days: u64 =
            r.parse("AIRWAVE_QUEUE_KEEP_DEAD_DAYS", 14, "a whole number of days");
        if !(1..=8760).contains(&keep_hours) {
            r.errors.push(format!(
                "AIRWAVE_QUEUE_KEEP_COMPLETED_HOURS must be between 1 and 8760 (got {keep_hours})"
            ));
        }
        if !(1..=365).contains(&keep_dead_days) {
            r.errors.push(format!(
                "AIRWAVE_QUEUE_KEEP_DEAD_DAYS must be between 1 and 365 (got {keep_dead_days})"
            ));
        }
        let retention = crate::queue::retention::Retention {
            finished_age: Duration::from_secs(keep_hours * 3600),
            finished_max: keep_max,
            dead_age: Duration::from_secs(keep_dead_days * 86_400),
        };

        let cors_origins = r.list("AIRWAVE_CORS_ORIGINS");
        for o in &cors_origins {
            if Url::parse(o)
                .map(|u| u.origin().ascii_serialization() != o.trim_end_matches('/'))
                .unwrap_or(true)
            {
                r.errors.push(format!("AIRWAVE_CORS_ORIGINS has `{o}`, which is not an origin like https://console.example.com"));
            }
        }

        let log_json = match r.get("AIRWAVE_LOG_FORMAT") {
            None | Some("text") => false,
            Some("json") => true,
            Some(o) => {
                r.errors.push(format!(
                    "AIRWAVE_LOG_FORMAT is `{o}`; expected `text` or `json`"
                ));
                false
            }
        };

        let redis_url = r.url("REDIS_URL", &["redis", "rediss"]).map(SecretUrl);
        let config = Config {
            env,
            bind,
            data_dir,
            public_url,
            database,
            jwt_secret,
            session_ttl: Duration::from_secs(session_minutes * 60),
            request_timeout: r.millis("AIRWAVE_REQUEST_TIMEOUT_MS", 30_000, 100, 3_600_000),
            max_body_bytes,
            cors_origins,
            log_json,
            queue_lease: r.millis("AIRWAVE_QUEUE_LEASE_MS", 60_000, 1_000, 3_600_000),
            retention,
            queues,
            queue_metrics_flush: r.millis("AIRWAVE_QUEUE_METRICS_FLUSH_MS", 5_000, 10, 600_000),
            health_check_interval: r.millis(
                "AIRWAVE_HEALTH_CHECK_INTERVAL_MS",
                10_000,
                50,
                3_600_000,
            ),
            ops_stats_interval: r.millis("AIRWAVE_OPS_STATS_INTERVAL_MS", 5_000, 50, 3_600_000),
            ops_stream_keep,
            health_history_keep: chrono::Duration::days(history_days.clamp(1, 90)),
            events_lag_warn: Duration::from_secs(lag_warn_s),
            events_lag_fail: Duration::from_secs(lag_fail_s),
            events_max_attempts,
            render_provider,
            creatomate_url,
            creatomate_poll,
            creatomate_timeout: Duration::from_secs(creatomate_timeout_s),
            redis_url,
            email_from: r
                .get("AIRWAVE_EMAIL_FROM")
                .unwrap_or("AIrWAVE <notifications@airwave.app>")
                .to_owned(),
            creatomate_api_key,
        };
        for (name, what) in NOT_YET_BUILT {
            if r.get(name).is_some() {
                r.errors.push(format!(
                    "{name} is set, but this build has no {what} yet; unset it (it is refused rather than silently ignored)"
                ));
            }
        }
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// The effective configuration as `NAME = value` lines, secrets redacted (`config check`).
    pub fn describe(&self) -> String {
        fn set(s: &Option<SecretString>) -> &'static str {
            if s.is_some() {
                "[redacted]"
            } else {
                "(not set)"
            }
        }
        fn opt_url(u: &Option<SecretUrl>) -> String {
            u.as_ref()
                .map(|u| redact_url(u.expose()))
                .unwrap_or_else(|| "(not set)".into())
        }
        let d = &self.database;
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            let _ = writeln!(out, "{k:<32} = {v}");
        };
        line("AIRWAVE_ENV", format!("{:?}", self.env).to_lowercase());
        line("AIRWAVE_BIND", self.bind.to_string());
        line("AIRWAVE_DATA_DIR", self.data_dir.display().to_string());
        line("AIRWAVE_PUBLIC_URL", self.public_url.to_string());
        line("DATABASE_URL", d.url.redacted());
        line("AIRWAVE_DB_MAX_CONNECTIONS", d.max_connections.to_string());
        line(
            "AIRWAVE_DB_ACQUIRE_TIMEOUT_MS",
            d.acquire_timeout.as_millis().to_string(),
        );
        line(
            "AIRWAVE_DB_STATEMENT_TIMEOUT_MS",
            d.statement_timeout.as_millis().to_string(),
        );
        line(
            "AIRWAVE_DB_SLOW_STATEMENT_MS",
            d.slow_statement.as_millis().to_string(),
        );
        line(
            "JWT_SECRET",
            match &self.jwt_secret {
                Some(_) => "[redacted]".into(),
                None => format!(
                    "(generated, kept in {})",
                    self.data_dir.join("jwt_secret").display()
                ),
            },
        );
        line(
            "AIRWAVE_SESSION_TTL_MINUTES",
            (self.session_ttl.as_secs() / 60).to_string(),
        );
        line(
            "AIRWAVE_REQUEST_TIMEOUT_MS",
            self.request_timeout.as_millis().to_string(),
        );
        line("AIRWAVE_MAX_BODY_BYTES", self.max_body_bytes.to_string());
        line("AIRWAVE_CORS_ORIGINS", self.cors_origins.join(","));
        line(
            "AIRWAVE_LOG_FORMAT",
            if self.log_json { "json" } else { "text" }.into(),
        );
        line(
            "AIRWAVE_QUEUE_LEASE_MS",
            self.queue_lease.as_millis().to_string(),
        );
        line(
            "AIRWAVE_HEALTH_CHECK_INTERVAL_MS",
            self.health_check_interval.as_millis().to_string(),
        );
        line(
            "AIRWAVE_OPS_STATS_INTERVAL_MS",
            self.ops_stats_interval.as_millis().to_string(),
        );
        line("AIRWAVE_OPS_STREAM_KEEP", self.ops_stream_keep.to_string());
        line(
            "AIRWAVE_HEALTH_HISTORY_DAYS",
            self.health_history_keep.num_days().to_string(),
        );
        line(
            "AIRWAVE_EVENTS_LAG_WARN_S",
            self.events_lag_warn.as_secs().to_string(),
        );
        line(
            "AIRWAVE_EVENTS_LAG_FAIL_S",
            self.events_lag_fail.as_secs().to_string(),
        );
        line(
            "AIRWAVE_EVENTS_MAX_ATTEMPTS",
            self.events_max_attempts.to_string(),
        );
        line(
            "AIRWAVE_QUEUE_METRICS_FLUSH_MS",
            self.queue_metrics_flush.as_millis().to_string(),
        );
        for name in crate::queue::QUEUES {
            if let Some(p) = self.queues.get(*name) {
                let up = name.to_uppercase();
                line(
                    &format!("AIRWAVE_QUEUE_{up}_CONCURRENCY"),
                    p.concurrency.to_string(),
                );
                line(
                    &format!("AIRWAVE_QUEUE_{up}_MAX_ATTEMPTS"),
                    p.max_attempts.to_string(),
                );
                line(
                    &format!("AIRWAVE_QUEUE_{up}_BACKOFF_BASE_MS"),
                    p.backoff.base.as_millis().to_string(),
                );
                line(
                    &format!("AIRWAVE_QUEUE_{up}_BACKOFF_CAP_MS"),
                    p.backoff.cap.as_millis().to_string(),
                );
                line(
                    &format!("AIRWAVE_QUEUE_{up}_RATE_PER_S"),
                    p.rate_per_s
                        .map_or_else(|| "0 (unlimited)".into(), |r| r.to_string()),
                );
                line(
                    &format!("AIRWAVE_QUEUE_{up}_MAX_WAITING"),
                    p.max_waiting.to_string(),
                );
            }
        }
        line(
            "AIRWAVE_QUEUE_KEEP_COMPLETED_HOURS",
            (self.retention.finished_age.as_secs() / 3600).to_string(),
        );
        line(
            "AIRWAVE_QUEUE_KEEP_COMPLETED_MAX",
            self.retention.finished_max.to_string(),
        );
        line(
            "AIRWAVE_QUEUE_KEEP_DEAD_DAYS",
            (self.retention.dead_age.as_secs() / 86_400).to_string(),
        );
        line("REDIS_URL", opt_url(&self.redis_url));
        line("AIRWAVE_EMAIL_FROM", self.email_from.clone());
        line(
            "AIRWAVE_RENDER_PROVIDER",
            match self.render_provider {
                RenderProviderKind::Local => "local",
                RenderProviderKind::Creatomate => "creatomate",
            }
            .into(),
        );
        line("CREATOMATE_API_KEY", set(&self.creatomate_api_key).into());
        line("AIRWAVE_CREATOMATE_URL", redact_url(&self.creatomate_url));
        line(
            "AIRWAVE_CREATOMATE_POLL_MS",
            self.creatomate_poll.as_millis().to_string(),
        );
        line(
            "AIRWAVE_CREATOMATE_TIMEOUT_S",
            self.creatomate_timeout.as_secs().to_string(),
        );
        out
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn parse_database_url(v: &str) -> Result<DatabaseUrl, String> {
    if let Some(rest) = v
        .strip_prefix("sqlite://")
        .or_else(|| v.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(
                "is `sqlite:` without a file path; expected sqlite://path/to/file.db".into(),
            );
        }
        return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    let url = Url::parse(v)
        .map_err(|e| format!("is not a valid URL ({e}); expected postgres://… or sqlite://…"))?;
    match url.scheme() {
        "postgres" | "postgresql" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(
                    "has no host; expected postgres://user:password@host:5432/database".into(),
                );
            }
            Ok(DatabaseUrl::Postgres(url))
        }
        other => Err(format!(
            "has unsupported scheme `{other}`; expected postgres://… or sqlite://…"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_configuration_gives_the_embedded_defaults() {
        let c = Config::from_vars(&vars(&[("AIRWAVE_DATA_DIR", "/tmp/x")])).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(
            matches!(c.database.url, DatabaseUrl::Sqlite(ref p) if p == &PathBuf::from("/tmp/x/airwave.db"))
        );
        assert!(c.redis_url.is_none() && c.jwt_secret.is_none());
        assert_eq!(c.env, Environment::Development);
    }

    #[test]
    fn every_problem_is_reported_at_once_and_names_its_variable() {
        let err = Config::from_vars(&vars(&[
            ("DATABASE_URL", "bogus://x"),
            ("AIRWAVE_ENV", "production"),
            ("AIRWAVE_BIND", "nope"),
            ("REDIS_URL", "http://x"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "DATABASE_URL",
            "JWT_SECRET",
            "AIRWAVE_BIND",
            "REDIS_URL",
            "AIRWAVE_PUBLIC_URL",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    #[test]
    fn postgres_and_sqlite_urls_are_recognised() {
        let c =
            Config::from_vars(&vars(&[("DATABASE_URL", "postgresql://u:p@db:5432/a")])).unwrap();
        assert!(matches!(c.database.url, DatabaseUrl::Postgres(_)));
        assert_eq!(
            c.database.url.redacted(),
            "postgresql://u:REDACTED@db:5432/a"
        );
        let c = Config::from_vars(&vars(&[("DATABASE_URL", "sqlite:///var/lib/a.db")])).unwrap();
        assert!(
            matches!(c.database.url, DatabaseUrl::Sqlite(ref p) if p == &PathBuf::from("/var/lib/a.db"))
        );
    }

    #[test]
    fn describe_never_prints_secrets() {
        let c = Config::from_vars(&vars(&[
            ("JWT_SECRET", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"),
            ("DATABASE_URL", "postgres://u:hunter2@db/a"),
            ("CREATOMATE_API_KEY", "cm_live_key"),
            ("REDIS_URL", "redis://:redispass@r:6379"),
        ]))
        .unwrap();
        let text = format!("{}{:?}", c.describe(), c);
        for secret in ["s3cr3t", "hunter2", "cm_live_key", "redispass"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }

    #[test]
    fn settings_of_backends_this_build_lacks_are_refused_each_named() {
        let err = Config::from_vars(&vars(&[
            ("SMTP_URL", "smtp://mail:25"),
            ("UPSTASH_REDIS_URL", "rediss://u:p@x:6379"),
            ("SENTRY_DSN", "https://k@sentry.example/1"),
        ]))
        .unwrap_err()
        .to_string();
        for name in ["SMTP_URL", "UPSTASH_REDIS_URL", "SENTRY_DSN"] {
            assert!(
                err.contains(&format!("{name} is set, but this build has no")),
                "{name}:\n{err}"
            );
        }
        assert!(!err.contains("u:p@"), "the refused value is not echoed");
    }

    #[test]
    fn a_short_jwt_secret_is_rejected() {
        let err = Config::from_vars(&vars(&[("JWT_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"));
    }
}
