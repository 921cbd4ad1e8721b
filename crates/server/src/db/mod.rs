//! The database: PostgreSQL in production, a SQLite file as the embedded default, chosen by the
//! `DATABASE_URL` scheme.
//!
//! Queries are runtime-checked and written in the SQL both databases agree on (`$1` parameters,
//! `RETURNING`, `ON CONFLICT`, times bound from the clock rather than `now()`), so one query body
//! serves both pools through [`with_db!`]. Where the dialects differ (full-text search) the feature
//! matches on [`Db`] and says so. Schemas live in `migrations/postgres` and `migrations/sqlite`
//! and are embedded in the binary.

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::{Duration, Instant};
use url::Url;

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
    /// The database's name: a PostgreSQL URL's database, a SQLite file's name.
    pub fn database_name(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => p
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            DatabaseUrl::Postgres(u) => u.path().trim_start_matches('/').to_owned(),
        }
    }

    /// The URL with any password replaced, safe to print.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => redact_url(u),
        }
    }
}

/// The database's section of the configuration (declared in [`settings`]).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
    pub slow_statement: Duration,
}

impl DatabaseConfig {
    /// Reads the section; without `DATABASE_URL`, a SQLite file in `data_dir`.
    pub fn read(r: &mut crate::config::settings::Reader, data_dir: &std::path::Path) -> Self {
        let embedded = || DatabaseUrl::Sqlite(data_dir.join("airwave.db"));
        let url = match r.raw(&settings::DATABASE_URL.name) {
            None => embedded(),
            Some(v) => settings::parse_url(v).unwrap_or_else(|e| {
                r.error(format!("DATABASE_URL {e}"));
                embedded()
            }),
        };
        Self {
            url,
            max_connections: u32::try_from(r.int(&settings::MAX_CONNECTIONS)).unwrap_or(10),
            acquire_timeout: r.millis(&settings::ACQUIRE_TIMEOUT),
            statement_timeout: r.millis(&settings::STATEMENT_TIMEOUT),
            slow_statement: r.millis(&settings::SLOW_STATEMENT),
        }
    }
}

/// Whether a database error (or an error caused by one) means the server could not be reached —
/// something waiting can heal — rather than a query or migration that is wrong.
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let sqlx_error = cause.downcast_ref::<sqlx::Error>().or_else(|| {
            match cause.downcast_ref::<sqlx::migrate::MigrateError>() {
                Some(sqlx::migrate::MigrateError::Execute(e)) => Some(e),
                _ => None,
            }
        });
        sqlx_error.is_some_and(is_unreachable_sqlx)
    })
}

/// [`is_unreachable`] for one `sqlx` error: I/O, TLS, an exhausted or closed pool, or PostgreSQL
/// saying it is shutting down or the connection failed (`57P01`–`57P03`, class `08`).
pub fn is_unreachable_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// The URL with any password (and query) replaced, safe to print.
pub fn redact_url(u: &Url) -> String {
    let mut u = u.clone();
    // A user name can be the secret itself (a Sentry DSN's key, a token in `https://TOKEN@host`).
    if !u.username().is_empty() {
        let _ = u.set_username("REDACTED");
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("REDACTED"));
    }
    if u.query().is_some() {
        u.set_query(Some("REDACTED"));
    }
    u.to_string()
}

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds. The body is compiled once per
/// database, so it must be portable SQL (see the module doc).
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

impl Db {
    /// Connects with the configured pool size, timeouts and slow-statement logging.
    pub async fn connect(cfg: &DatabaseConfig) -> anyhow::Result<Db> {
        match &cfg.url {
            DatabaseUrl::Postgres(url) => {
                let opts = Self::pg_options(url, cfg)?;
                let pool = PgPoolOptions::new()
                    .max_connections(cfg.max_connections)
                    .acquire_timeout(cfg.acquire_timeout)
                    .connect_with(opts)
                    .await
                    .with_context(|| {
                        format!("cannot connect to PostgreSQL at {}", cfg.url.redacted())
                    })?;
                Ok(Db::Postgres(pool))
            }
            DatabaseUrl::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!("cannot create the database folder {}", parent.display())
                    })?;
                }
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(cfg.statement_timeout.min(Duration::from_secs(30)))
                    .log_statements(log::LevelFilter::Trace)
                    .log_slow_statements(log::LevelFilter::Warn, cfg.slow_statement);
                let pool = SqlitePoolOptions::new()
                    .max_connections(cfg.max_connections)
                    .acquire_timeout(cfg.acquire_timeout)
                    .connect_with(opts)
                    .await
                    .with_context(|| {
                        format!("cannot open the SQLite database {}", path.display())
                    })?;
                Ok(Db::Sqlite(pool))
            }
        }
    }

    /// Like [`Db::connect`], but PostgreSQL connections are made on first use: the server starts
    /// while the database is briefly unreachable (requests then fail as `503`).
    pub async fn connect_lazy(cfg: &DatabaseConfig) -> anyhow::Result<Db> {
        match &cfg.url {
            DatabaseUrl::Postgres(url) => {
                let opts = Self::pg_options(url, cfg)?;
                Ok(Db::Postgres(
                    PgPoolOptions::new()
                        .max_connections(cfg.max_connections)
                        .acquire_timeout(cfg.acquire_timeout)
                        .connect_lazy_with(opts),
                ))
            }
            DatabaseUrl::Sqlite(_) => Self::connect(cfg).await,
        }
    }

    fn pg_options(url: &Url, cfg: &DatabaseConfig) -> anyhow::Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(url.as_str())
            .context("DATABASE_URL is not a usable PostgreSQL URL")?
            .options([(
                "statement_timeout",
                cfg.statement_timeout.as_millis().to_string(),
            )])
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Warn, cfg.slow_statement))
    }

    /// Applies the embedded migrations that have not run yet.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Postgres(p) => sqlx::migrate!("../../migrations/postgres").run(p).await,
            Db::Sqlite(p) => sqlx::migrate!("../../migrations/sqlite").run(p).await,
        }
        .context("database migration failed")
    }

    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// One round trip; returns how long it took.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let start = Instant::now();
        with_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(start.elapsed())
    }

    pub async fn close(&self) {
        with_db!(self, pool => pool.close().await)
    }
}

/// Opens a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: the write lock is
/// taken up front (waiting in the busy handler), because a deferred transaction that reads first
/// and writes later fails at once with `SQLITE_BUSY` when another connection wrote in between.
/// Every transaction here writes, so every one uses this.
pub trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

/// Parses a JSON object stored in a TEXT (SQLite) or JSONB (PostgreSQL) column.
pub fn json_object(
    v: sqlx::types::Json<serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    match v.0 {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// The database's settings.
pub mod explain;
pub mod routes;
pub mod slow;

pub mod settings {
    use super::DatabaseUrl;
    use crate::config::settings::{Kind, Section, Setting};
    use std::borrow::Cow;
    use std::path::PathBuf;
    use url::Url;

    /// `DATABASE_URL`'s value: `postgres://…` (or `postgresql://`) with a host, or
    /// `sqlite://path` / `sqlite:path`. The error completes "DATABASE_URL …".
    pub fn parse_url(v: &str) -> Result<DatabaseUrl, Cow<'static, str>> {
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

    pub const DATABASE_URL: Setting = Setting::new(
        "DATABASE_URL",
        Kind::Custom {
            default: "`sqlite://$AIRWAVE_DATA_DIR/airwave.db`",
            values: "`postgres://user:pass@host:5432/db` (also `postgresql://`, with libpq options such as `?sslmode=require`) or `sqlite://path` / `sqlite:path`",
            secret: true,
        },
        "Which database. Any other scheme is an error.",
    );
    pub const MAX_CONNECTIONS: Setting = Setting::int(
        "AIRWAVE_DB_MAX_CONNECTIONS",
        10,
        1,
        1000,
        "",
        "Pool size per process.",
    );
    pub const ACQUIRE_TIMEOUT: Setting = Setting::millis(
        "AIRWAVE_DB_ACQUIRE_TIMEOUT_MS",
        5_000,
        10,
        600_000,
        "How long a request waits for a pooled connection; past it the answer is `503` `database_busy` with `Retry-After`.",
    );
    pub const STATEMENT_TIMEOUT: Setting = Setting::millis(
        "AIRWAVE_DB_STATEMENT_TIMEOUT_MS",
        30_000,
        10,
        3_600_000,
        "PostgreSQL `statement_timeout` on every connection. On SQLite, the busy timeout (capped at 30 s).",
    );
    pub const SLOW_STATEMENT: Setting = Setting::millis(
        "AIRWAVE_DB_SLOW_STATEMENT_MS",
        500,
        0,
        3_600_000,
        "Statements slower than this are logged at WARN with their SQL (never their parameters) and counted in the slow-statement log that `GET /api/ops/db/slow-queries` shows when `pg_stat_statements` is not installed. `0` counts every statement (and logs each at WARN: for a short look, not for production).",
    );

    pub fn section() -> Section {
        Section {
            title: "Database",
            intro: "Migrations are embedded in the binary and run at start-up and by `airwave-server migrate`. SQLite runs in WAL mode with foreign keys on.",
            settings: vec![
                DATABASE_URL,
                MAX_CONNECTIONS,
                ACQUIRE_TIMEOUT,
                STATEMENT_TIMEOUT,
                SLOW_STATEMENT,
            ],
        }
    }
}
