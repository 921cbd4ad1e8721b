//! Configuration: read once at start-up from the environment into typed fields, validated all at
//! once so that one run names every missing or invalid variable. Nothing else reads `std::env`.
//!
//! Variable names follow the production-readiness plan's environment checklist, so an existing
//! deployment keeps its settings; ours are prefixed `AIRWAVE_`. Each variable is declared once, as
//! a [`settings::Setting`] in the module that owns it (the server's own below, the database's in
//! `db`, each feature's in its folder); the declarations drive parsing, `config check` and
//! `docs/configuration.md`, which is generated from them (a test fails when it is stale).

pub mod settings;

use crate::db::redact_url;
pub use crate::db::{DatabaseConfig, DatabaseUrl};
use secrecy::SecretString;
use settings::{Reader, Section, Setting};
use std::borrow::Cow;
use std::collections::BTreeMap;
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
    /// The variables it was read from (for `config check`; only declared ones are ever printed,
    /// secrets redacted).
    vars: BTreeMap<String, String>,
}

/// The server's own settings.
pub mod server {
    use super::settings::{Kind, Section, Setting};

    pub const ENV: Setting = Setting::new(
        "AIRWAVE_ENV",
        Kind::Choice {
            default: "development",
            options: &["development", "production"],
        },
        "Production requires `JWT_SECRET` and an `https://` `AIRWAVE_PUBLIC_URL`.",
    );
    pub const BIND: Setting = Setting::new(
        "AIRWAVE_BIND",
        Kind::Custom { default: "`127.0.0.1:8080`", values: "`IP:port`", secret: false },
        "Listen address. Port `0` picks a free port (the chosen address is printed on stdout: `airwave-server listening on http://…`).",
    );
    pub const DATA_DIR: Setting = Setting::new(
        "AIRWAVE_DATA_DIR",
        Kind::Custom { default: "the per-user data dir + `/airwave` (Linux: `~/.local/share/airwave`)", values: "a folder", secret: false },
        "Holds the SQLite database, the generated development key and the blob folder. Created if missing.",
    );
    pub const PUBLIC_URL: Setting = Setting::new(
        "AIRWAVE_PUBLIC_URL",
        Kind::Custom { default: "`http://` + the bound address", values: "`http://…` or `https://…` (https in production, where it is required)", secret: false },
        "The URL users reach the server at; links in e-mails (approval, password reset) start with it.",
    );
    pub const REQUEST_TIMEOUT: Setting = Setting::millis(
        "AIRWAVE_REQUEST_TIMEOUT_MS",
        30_000,
        100,
        3_600_000,
        "A request running longer is answered `408` (`code: timeout`).",
    );
    pub const MAX_BODY_BYTES: Setting = Setting::int(
        "AIRWAVE_MAX_BODY_BYTES",
        1_048_576,
        1_024,
        1_073_741_824,
        "bytes",
        "Larger JSON bodies get `413` (`code: payload_too_large`).",
    );
    pub const CORS_ORIGINS: Setting = Setting::new(
        "AIRWAVE_CORS_ORIGINS",
        Kind::Custom {
            default: "none",
            values: "comma-separated origins (`https://console.example.com`)",
            secret: false,
        },
        "Origins allowed to call the API from a browser.",
    );
    pub const LOG_FORMAT: Setting = Setting::new(
        "AIRWAVE_LOG_FORMAT",
        Kind::Choice {
            default: "text",
            options: &["text", "json"],
        },
        "To stderr. Filter with `RUST_LOG` (default `info`).",
    );
    pub const SESSION_TTL: Setting = Setting::int(
        "AIRWAVE_SESSION_TTL_MINUTES",
        720,
        5,
        43_200,
        "minutes",
        "Lifetime of a login session.",
    );
    pub const JWT_SECRET: Setting = Setting::new(
        "JWT_SECRET",
        Kind::Secret { min_len: 32 },
        "Signs session tokens (HS256) and approval links. Required in production; in development one is generated once and kept in `$AIRWAVE_DATA_DIR/jwt_secret` (mode 0600). Changing it ends every session and invalidates outstanding approval links.",
    );
    pub const ADMIN_PASSWORD: Setting = Setting::new(
        "AIRWAVE_ADMIN_PASSWORD",
        Kind::Custom {
            default: "unset",
            values: "secret",
            secret: true,
        },
        "Read only by `admin create-user` (otherwise the password is the first line of stdin).",
    );
    pub const EMAIL_FROM: Setting = Setting::new(
        "AIRWAVE_EMAIL_FROM",
        Kind::Text { default: "AIrWAVE <notifications@airwave.app>" },
        "The sender of e-mails. Until e-mail delivery lands, the outbox (the `emails` table) holds every message the server would send: password-reset and approval links are there.",
    );

    pub fn section() -> Section {
        Section {
            title: "Server",
            intro: "",
            settings: vec![
                ENV,
                BIND,
                DATA_DIR,
                PUBLIC_URL,
                REQUEST_TIMEOUT,
                MAX_BODY_BYTES,
                CORS_ORIGINS,
                LOG_FORMAT,
                SESSION_TTL,
                JWT_SECRET,
                ADMIN_PASSWORD,
                EMAIL_FROM,
            ],
        }
    }

    /// Variables that select a backend or feature this build does not have yet (the plan's
    /// names): refused at start-up when set, so a deployment learns at once instead of running
    /// without it. They are declared for real by their features as those land.
    pub fn not_yet_built() -> Section {
        let s = |name: &'static str, comes_with: &'static str, doc: &'static str| {
            Setting::new(name, Kind::NotYetBuilt { comes_with }, doc)
        };
        Section {
            title: "Not in this build yet: refused when set",
            intro: "These select backends whose features have not landed. Rather than being parsed and silently ignored, each one set stops the server (exit 2) with a message naming it; they are accepted again, with these names, as their features land.",
            settings: vec![
                s("UPSTASH_REDIS_URL", "Redis rate limiter", "The rate limiter on Redis/Upstash."),
                s("UPSTASH_REDIS_TOKEN", "Redis rate limiter", "Upstash's token."),
                s("AWS_S3_BUCKET", "S3 storage", "Blobs on S3 (until then they live in `$AIRWAVE_DATA_DIR/blobs`)."),
                s("CDN_DOMAIN", "CDN delivery", "Assets served from a CDN."),
                s("RESEND_API_KEY", "Resend e-mail transport", "E-mail through Resend."),
                s("SMTP_URL", "SMTP e-mail transport", "E-mail through SMTP."),
                s("SENTRY_DSN", "server error reporting", "The server's errors to Sentry (the console's own `AIRWAVE_CONSOLE_SENTRY_DSN` works today)."),
                s("NEXT_PUBLIC_SENTRY_DSN", "server error reporting", "The plan's other name for `SENTRY_DSN`."),
                s("MIXPANEL_TOKEN", "analytics forwarding", "Analytics forwarded to Mixpanel."),
                s("AIRWAVE_WEBHOOK_ALLOW_HOSTS", "outgoing webhooks", "Hosts/CIDRs exempt from the webhooks' SSRF guard."),
            ],
        }
    }
}

/// Every section of the configuration, in the manual's order: the server's, the database's,
/// each feature's (as `startup::features` lists them), then what this build refuses.
pub fn sections() -> Vec<Section> {
    let mut out = vec![server::section(), crate::db::settings::section()];
    out.extend(
        crate::startup::features()
            .iter()
            .filter_map(|f| f.settings()),
    );
    out.push(server::not_yet_built());
    out
}

/// What `docs/configuration.md` says before the tables.
const PREFACE: &str = r#"# Configuration

<!-- Generated from the settings' declarations (`config::sections`) by the `configuration_doc_is_current`
     test: do not edit. Regenerate with `AIRWAVE_UPDATE_DOCS=1 cargo test -p airwave-server --lib configuration_doc`. -->

`airwave-server` reads its configuration once, at start-up, from the environment. Nothing else
reads the environment later. Every problem is reported at once, each naming its variable, and the
process exits with status **2**:

```
$ DATABASE_URL=bogus://x AIRWAVE_ENV=production airwave-server
airwave-server: invalid configuration (3 problems):
  - AIRWAVE_PUBLIC_URL is required in production (links in emails use it)
  - DATABASE_URL has unsupported scheme `bogus`; expected postgres://… or sqlite://…
  - JWT_SECRET is required in production (at least 32 characters)
```

`airwave-server config check` validates and prints every variable with the value in force;
secrets print as `[redacted]` and passwords inside URLs as `REDACTED`. A blank variable counts as
unset. Variable names follow the production-readiness plan's *Environment Variables Checklist*, so
an existing deployment keeps its settings; ours are prefixed `AIRWAVE_`.
"#;

/// `docs/configuration.md`, generated from the declarations.
pub fn reference() -> String {
    settings::reference(PREFACE, &sections())
}

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

impl Config {
    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables; reports every problem at once.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
        use crate::{db::settings as db, events::settings as ev, ops::settings as ops};
        use crate::{queue::settings as q, render::settings as rs};
        let mut r = Reader::new(vars);

        let env = match r.choice(&server::ENV) {
            "production" => Environment::Production,
            _ => Environment::Development,
        };
        let production = env == Environment::Production;

        let default_bind: SocketAddr = ([127, 0, 0, 1], 8080).into();
        let bind = match r.raw(&server::BIND.name) {
            None => default_bind,
            Some(v) => v.parse().unwrap_or_else(|_| {
                r.error(format!(
                    "AIRWAVE_BIND is `{v}`, which is not an address like 127.0.0.1:8080"
                ));
                default_bind
            }),
        };

        let data_dir = match r.raw(&server::DATA_DIR.name) {
            Some(d) => PathBuf::from(d),
            None => dirs::data_dir()
                .unwrap_or_else(|| PathBuf::from("."))
                .join("airwave"),
        };

        let public_url = match r.raw(&server::PUBLIC_URL.name).map(|v| (v, Url::parse(v))) {
            Some((_, Ok(u))) if ["http", "https"].contains(&u.scheme()) => {
                if production && u.scheme() != "https" {
                    r.error("AIRWAVE_PUBLIC_URL must be an https:// URL in production");
                }
                Some(u)
            }
            Some((_, Ok(u))) => {
                r.error(format!(
                    "AIRWAVE_PUBLIC_URL has scheme `{}`; expected http:// or https://",
                    u.scheme()
                ));
                None
            }
            Some((_, Err(e))) => {
                r.error(format!("AIRWAVE_PUBLIC_URL is not a valid URL ({e})"));
                None
            }
            None => {
                if production {
                    r.error(
                        "AIRWAVE_PUBLIC_URL is required in production (links in emails use it)",
                    );
                }
                None
            }
        }
        .unwrap_or_else(|| {
            Url::parse(&format!("http://{bind}"))
                .unwrap_or_else(|_| Url::parse("http://127.0.0.1:8080").expect("static url"))
        });

        let db_url = match r.raw(&db::DATABASE_URL.name) {
            None => DatabaseUrl::Sqlite(data_dir.join("airwave.db")),
            Some(v) => match parse_database_url(v) {
                Ok(u) => u,
                Err(e) => {
                    r.error(format!("DATABASE_URL {e}"));
                    DatabaseUrl::Sqlite(data_dir.join("airwave.db"))
                }
            },
        };
        let database = DatabaseConfig {
            url: db_url,
            max_connections: u32::try_from(r.int(&db::MAX_CONNECTIONS)).unwrap_or(10),
            acquire_timeout: r.millis(&db::ACQUIRE_TIMEOUT),
            statement_timeout: r.millis(&db::STATEMENT_TIMEOUT),
            slow_statement: r.millis(&db::SLOW_STATEMENT),
        };

        let jwt_secret = r.secret(&server::JWT_SECRET);
        if jwt_secret.is_none() && production {
            r.error("JWT_SECRET is required in production (at least 32 characters)");
        }

        let mut queues = std::collections::HashMap::new();
        for name in crate::queue::QUEUES {
            let [concurrency, max_attempts, base, cap, rate, max_waiting] =
                <[Setting; 6]>::try_from(q::for_queue(name))
                    .unwrap_or_else(|_| unreachable!("six settings per queue"));
            let base = r.millis(&base);
            let cap_ms = r.millis(&cap);
            if cap_ms < base {
                r.error(format!(
                    "{} must not be below {}",
                    cap.name,
                    q::var(name, "BACKOFF_BASE_MS")
                ));
            }
            let rate = r.float(&rate);
            queues.insert(
                (*name).to_owned(),
                crate::queue::QueuePolicy {
                    max_waiting: u64::try_from(r.int(&max_waiting)).unwrap_or(1),
                    concurrency: usize::try_from(r.int(&concurrency)).unwrap_or(1),
                    max_attempts: u32::try_from(r.int(&max_attempts)).unwrap_or(1),
                    backoff: crate::queue::Backoff { base, cap: cap_ms },
                    rate_per_s: (rate > 0.0).then_some(rate),
                },
            );
        }

        let lag_warn = r.secs(&ev::LAG_WARN);
        let lag_fail = r.secs(&ev::LAG_FAIL);
        if lag_fail < lag_warn {
            r.error("AIRWAVE_EVENTS_LAG_FAIL_S must not be below AIRWAVE_EVENTS_LAG_WARN_S");
        }

        let creatomate_api_key = r.secret(&rs::CREATOMATE_API_KEY);
        let render_provider = match r.choice(&rs::PROVIDER) {
            "creatomate" => {
                if creatomate_api_key.is_none() {
                    r.error(
                        "AIRWAVE_RENDER_PROVIDER is `creatomate` but CREATOMATE_API_KEY is not set",
                    );
                }
                RenderProviderKind::Creatomate
            }
            _ => RenderProviderKind::Local,
        };

        let cors_origins: Vec<String> = r
            .raw(&server::CORS_ORIGINS.name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        for o in &cors_origins {
            if Url::parse(o)
                .map(|u| u.origin().ascii_serialization() != o.trim_end_matches('/'))
                .unwrap_or(true)
            {
                r.error(format!("AIRWAVE_CORS_ORIGINS has `{o}`, which is not an origin like https://console.example.com"));
            }
        }

        let retention = crate::queue::retention::Retention {
            finished_age: r.secs(&q::KEEP_COMPLETED_HOURS) * 3600,
            finished_max: u64::try_from(r.int(&q::KEEP_COMPLETED_MAX)).unwrap_or(0),
            dead_age: r.secs(&q::KEEP_DEAD_DAYS) * 86_400,
        };

        let config = Config {
            env,
            bind,
            data_dir,
            public_url,
            database,
            jwt_secret,
            session_ttl: r.secs(&server::SESSION_TTL) * 60,
            request_timeout: r.millis(&server::REQUEST_TIMEOUT),
            max_body_bytes: usize::try_from(r.int(&server::MAX_BODY_BYTES)).unwrap_or(1 << 20),
            cors_origins,
            log_json: r.choice(&server::LOG_FORMAT) == "json",
            queue_lease: r.millis(&q::LEASE),
            retention,
            queues,
            queue_metrics_flush: r.millis(&q::METRICS_FLUSH),
            health_check_interval: r.millis(&ops::CHECK_INTERVAL),
            ops_stats_interval: r.millis(&ops::STATS_INTERVAL),
            ops_stream_keep: r.int(&ops::STREAM_KEEP),
            health_history_keep: chrono::Duration::days(r.int(&ops::HISTORY_DAYS)),
            events_lag_warn: lag_warn,
            events_lag_fail: lag_fail,
            events_max_attempts: u32::try_from(r.int(&ev::MAX_ATTEMPTS)).unwrap_or(8),
            render_provider,
            creatomate_url: r
                .url(&rs::CREATOMATE_URL)
                .unwrap_or_else(|| Url::parse("https://api.creatomate.com").expect("a valid URL")),
            creatomate_poll: r.millis(&rs::CREATOMATE_POLL),
            creatomate_timeout: r.secs(&rs::CREATOMATE_TIMEOUT),
            redis_url: r.url(&q::REDIS_URL).map(SecretUrl),
            email_from: r.text(&server::EMAIL_FROM),
            creatomate_api_key,
            vars: vars.clone(),
        };
        r.refuse_not_yet_built(&server::not_yet_built().settings);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// Every declared variable with the value in force, secrets redacted (`config check`).
    pub fn describe(&self) -> String {
        settings::describe(&self.vars, &sections())
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

fn parse_database_url(v: &str) -> Result<DatabaseUrl, Cow<'static, str>> {
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
    let url = Url::parse(v).map_err(|e| {
        Cow::Owned(format!(
            "is not a valid URL ({e}); expected postgres://… or sqlite://…"
        ))
    })?;
    match url.scheme() {
        "postgres" | "postgresql" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(
                    "has no host; expected postgres://user:password@host:5432/database".into(),
                );
            }
            Ok(DatabaseUrl::Postgres(url))
        }
        other => Err(Cow::Owned(format!(
            "has unsupported scheme `{other}`; expected postgres://… or sqlite://…"
        ))),
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
            ("AIRWAVE_ADMIN_PASSWORD", "Pass:word!"),
        ]))
        .unwrap();
        let text = format!("{}{:?}", c.describe(), c);
        for secret in ["s3cr3t", "hunter2", "cm_live_key", "redispass", "Pass:word"] {
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
    fn configuration_doc_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let want = reference();
        if std::env::var_os("AIRWAVE_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/configuration.md is stale: run `AIRWAVE_UPDATE_DOCS=1 cargo test -p airwave-server --lib configuration_doc`"
        );
    }

    #[test]
    fn every_declared_name_is_unique_and_every_parsed_one_declared() {
        let mut seen = std::collections::HashSet::new();
        for s in sections().iter().flat_map(|s| s.settings.clone()) {
            assert!(seen.insert(s.name.to_string()), "{} declared twice", s.name);
        }
        // Each declared variable set to garbage is named in the errors (or accepted as text).
        for name in &seen {
            let err = Config::from_vars(&vars(&[(name.as_str(), "\u{1}garbage")])).err();
            if let Some(e) = err {
                assert!(e.to_string().contains(name.as_str()), "{name}: {e}");
            }
        }
    }

    #[test]
    fn a_short_jwt_secret_is_rejected() {
        let err = Config::from_vars(&vars(&[("JWT_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"));
    }
}
