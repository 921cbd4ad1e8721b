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
use settings::{Reader, Section};
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

/// The whole configuration. `Debug` never prints a secret. Each field's variable, default, bounds
/// and meaning are in its declaration (the server's own in [`server`], a feature's in
/// `<feature>::settings`), and in `docs/configuration.md` generated from them.
#[derive(Clone)]
pub struct Config {
    pub env: Environment,
    /// Port 0 picks a free port.
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// The URL users reach this server at, used in links; `http://{bind}` unless set.
    pub public_url: Url,
    /// In development, when unset, a secret is generated once and kept in the data dir.
    pub jwt_secret: Option<SecretString>,
    pub session_ttl: Duration,
    /// A password reset revokes the user's API tokens too (not only their sessions).
    pub reset_revokes_tokens: bool,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub cors_origins: Vec<String>,
    pub log_json: bool,
    pub email: crate::email::settings::EmailConfig,
    /// Where every response is written down (the test suite's contract check); never in production.
    pub record_responses: Option<PathBuf>,
    /// Each backend's and feature's own section, declared, read and validated in its folder.
    pub database: DatabaseConfig,
    pub storage: crate::storage::settings::StorageConfig,
    /// `https://CDN_DOMAIN/` when set: where public assets are served from.
    pub cdn: Option<url::Url>,
    /// `AWS_S3_BACKUP_BUCKET`: where every object is copied as well.
    pub backup_bucket: Option<crate::storage::settings::BackupBucket>,
    pub uploads: crate::assets::settings::UploadConfig,
    pub backups: crate::backups::settings::BackupConfig,
    pub exports: crate::exports::settings::ExportConfig,
    pub queue: crate::queue::settings::QueueConfig,
    pub ops: crate::ops::settings::OpsConfig,
    pub events: crate::events::settings::EventsConfig,
    pub render: crate::render::settings::RenderConfig,
    pub tracking: crate::tracking::settings::TrackingConfig,
    pub webhooks: crate::webhooks::settings::WebhookConfig,
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
    pub const RESET_REVOKES_TOKENS: Setting = Setting::new(
        "AIRWAVE_RESET_REVOKES_TOKENS",
        Kind::Choice {
            default: "on",
            options: &["on", "off"],
        },
        "A password reset ends the user's sessions and, when `on`, revokes their API tokens too.",
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

    pub const RECORD_RESPONSES: Setting = Setting::new(
        "AIRWAVE_RECORD_RESPONSES",
        Kind::Text { default: "" },
        "For the test suite: appends every API response (method, route, status, content type, JSON body) to this file, one JSON object per line, to check them against the OpenAPI document. Refused in production: bodies carry tokens.",
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
                RESET_REVOKES_TOKENS,
                JWT_SECRET,
                ADMIN_PASSWORD,
                RECORD_RESPONSES,
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
                s("MIXPANEL_TOKEN", "analytics forwarding", "Analytics forwarded to Mixpanel."),
            ],
        }
    }
}

/// Every section of the configuration, in the manual's order: the server's, the database's,
/// each feature's (as `startup::features` lists them), then what this build refuses.
pub fn sections() -> Vec<Section> {
    let mut out = vec![
        server::section(),
        crate::db::settings::section(),
        crate::storage::settings::section(),
    ];
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

/// A URL that may carry credentials: printed with them redacted.
#[derive(Clone)]
pub struct SecretUrl(Url);

impl SecretUrl {
    pub fn new(url: Url) -> Self {
        Self(url)
    }

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
    /// Where public assets are served from: `https://CDN_DOMAIN/`, or this server.
    pub fn public_assets_base(&self) -> &url::Url {
        self.cdn.as_ref().unwrap_or(&self.public_url)
    }

    /// A link to `path` on the public URL (what e-mails carry), with `token` as its `token`
    /// query parameter when given.
    pub fn link(&self, path: &str, token: Option<&str>) -> crate::error::Result<Url> {
        let mut url = self
            .public_url
            .join(path)
            .map_err(|e| crate::error::Error::Internal(e.into()))?;
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("token", token);
        }
        Ok(url)
    }

    /// Reads the process environment.
    pub fn from_process_env() -> Result<Self, ConfigErrors> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables; reports every problem at once.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigErrors> {
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

        let database = DatabaseConfig::read(&mut r, &data_dir);
        let storage = crate::storage::settings::StorageConfig::read(&mut r, &data_dir, production);
        let cdn = crate::storage::settings::read_cdn(&mut r);
        let backup_bucket = crate::storage::settings::read_backup_bucket(&mut r, &storage);

        let jwt_secret = r.secret(&server::JWT_SECRET);
        if jwt_secret.is_none() && production {
            r.error("JWT_SECRET is required in production (at least 32 characters)");
        }

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

        let email =
            crate::email::settings::EmailConfig::read(&mut r, &public_url, &data_dir, production);
        let config = Config {
            env,
            bind,
            data_dir,
            public_url,
            database,
            storage,
            cdn,
            backup_bucket,
            uploads: crate::assets::settings::UploadConfig::read(&mut r),
            backups: crate::backups::settings::BackupConfig::read(&mut r),
            exports: crate::exports::settings::ExportConfig::read(&mut r),
            jwt_secret,
            session_ttl: r.secs(&server::SESSION_TTL) * 60,
            reset_revokes_tokens: r.choice(&server::RESET_REVOKES_TOKENS) == "on",
            request_timeout: r.millis(&server::REQUEST_TIMEOUT),
            max_body_bytes: usize::try_from(r.int(&server::MAX_BODY_BYTES)).unwrap_or(1 << 20),
            cors_origins,
            log_json: r.choice(&server::LOG_FORMAT) == "json",
            queue: crate::queue::settings::QueueConfig::read(&mut r),
            ops: crate::ops::settings::OpsConfig::read(&mut r),
            events: crate::events::settings::EventsConfig::read(&mut r),
            render: crate::render::settings::RenderConfig::read(&mut r, production),
            tracking: crate::tracking::settings::TrackingConfig::read(&mut r, production),
            webhooks: crate::webhooks::settings::WebhookConfig::read(&mut r, production),
            email,
            record_responses: match r.text(&server::RECORD_RESPONSES) {
                p if p.is_empty() => None,
                _ if production => {
                    r.error("AIRWAVE_RECORD_RESPONSES is for the test suite and refused in production (response bodies carry tokens)");
                    None
                }
                p => Some(PathBuf::from(p)),
            },
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
        assert!(c.queue.redis_url.is_none() && c.jwt_secret.is_none());
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
            "postgresql://REDACTED:REDACTED@db:5432/a"
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
        // A user name can be the secret (a Sentry DSN's key): redacted too.
        let dsn = url::Url::parse("https://0123abcdkey@o1.ingest.sentry.io/42").unwrap();
        let shown = crate::db::redact_url(&dsn);
        assert!(!shown.contains("0123abcdkey"), "{shown}");
        let c = Config::from_vars(&vars(&[("REDIS_URL", "redis://redisuser:redispw2@r:6379")]))
            .unwrap();
        let text = format!("{}{:?}", c.describe(), c);
        for secret in ["redisuser", "redispw2"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }

    #[test]
    fn production_sends_email_somewhere_and_the_smtp_password_stays_secret() {
        let prod = [
            ("AIRWAVE_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("AIRWAVE_PUBLIC_URL", "https://app.example.com"),
        ];
        let err = Config::from_vars(&vars(&prod)).unwrap_err().to_string();
        assert!(err.contains("production sends e-mail"), "{err}");
        let mut outbox = prod.to_vec();
        outbox.push(("AIRWAVE_EMAIL_TRANSPORT", "outbox"));
        assert!(Config::from_vars(&vars(&outbox)).is_ok());
        let mut plain = prod.to_vec();
        plain.push(("SMTP_URL", "smtp://mailer:pw@mail.example.com:587"));
        let err = Config::from_vars(&vars(&plain)).unwrap_err().to_string();
        assert!(err.contains("SMTP_URL must use TLS in production"), "{err}");
        let mut smtp = prod.to_vec();
        smtp.push(("SMTP_URL", "smtps://mailer:smtp-pw-9@mail.example.com:465"));
        let c = Config::from_vars(&vars(&smtp)).unwrap();
        assert_eq!(c.email.transport.name(), "smtp");
        let text = format!("{}{:?}", c.describe(), c);
        assert!(!text.contains("smtp-pw-9"), "{text}");
        // Resend wins over SMTP under `auto`; naming a transport without its setting is an error.
        let c = Config::from_vars(&vars(&[
            ("RESEND_API_KEY", "re_0123456789"),
            ("SMTP_URL", "smtp://m:25"),
        ]))
        .unwrap();
        assert_eq!(c.email.transport.name(), "resend");
        let err = Config::from_vars(&vars(&[("AIRWAVE_EMAIL_TRANSPORT", "smtp")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SMTP_URL is not set"), "{err}");
        let err = Config::from_vars(&vars(&[("AIRWAVE_EMAIL_FROM", "not an address")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AIRWAVE_EMAIL_FROM"), "{err}");
    }

    #[test]
    fn a_cdn_domain_is_a_bare_host() {
        let c = Config::from_vars(&vars(&[("CDN_DOMAIN", "d111.cloudfront.net")])).unwrap();
        assert_eq!(
            c.public_assets_base().as_str(),
            "https://d111.cloudfront.net/"
        );
        for bad in [
            "https://cdn.example.com",
            "cdn.example.com/assets",
            "cdn.example.com:8443",
            "10.0.0.1",
        ] {
            let err = Config::from_vars(&vars(&[("CDN_DOMAIN", bad)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("CDN_DOMAIN must be a host name"),
                "{bad}: {err}"
            );
        }
        let c = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(c.public_assets_base(), &c.public_url);
    }

    #[test]
    fn settings_of_backends_this_build_lacks_are_refused_each_named() {
        let err = Config::from_vars(&vars(&[
            ("UPSTASH_REDIS_URL", "rediss://u:p@x:6379"),
            ("MIXPANEL_TOKEN", "0123456789abcdef"),
        ]))
        .unwrap_err()
        .to_string();
        for name in ["UPSTASH_REDIS_URL", "MIXPANEL_TOKEN"] {
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
    fn the_creatomate_key_is_never_sent_over_plain_http_in_production() {
        let base = [
            ("AIRWAVE_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("AIRWAVE_PUBLIC_URL", "https://app.example.com"),
            ("AIRWAVE_RENDER_PROVIDER", "creatomate"),
            ("CREATOMATE_API_KEY", "cm_key"),
            ("SMTP_URL", "smtps://mail.example.com:465"),
        ];
        let mut plain = base.to_vec();
        plain.push(("AIRWAVE_CREATOMATE_URL", "http://api.creatomate.com"));
        let err = Config::from_vars(&vars(&plain)).unwrap_err().to_string();
        assert!(
            err.contains("AIRWAVE_CREATOMATE_URL must be an https:// URL"),
            "{err}"
        );
        assert!(Config::from_vars(&vars(&base)).is_ok());
        // Development may point it at a local stand-in.
        let dev = [
            ("AIRWAVE_RENDER_PROVIDER", "creatomate"),
            ("CREATOMATE_API_KEY", "cm_key"),
            ("AIRWAVE_CREATOMATE_URL", "http://127.0.0.1:9999"),
        ];
        assert!(Config::from_vars(&vars(&dev)).is_ok());
    }

    #[test]
    fn a_short_jwt_secret_is_rejected() {
        let err = Config::from_vars(&vars(&[("JWT_SECRET", "short")])).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"));
    }
}
