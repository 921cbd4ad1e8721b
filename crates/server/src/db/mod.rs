//! The database: PostgreSQL in production, a SQLite file as the embedded default, chosen by the
//! `DATABASE_URL` scheme.
//!
//! Queries are runtime-checked and written in the SQL both databases agree on (`$1` parameters,
//! `RETURNING`, `ON CONFLICT`, times bound from the clock rather than `now()`), so one query body
//! serves both pools through [`with_db!`]. Where the dialects differ (full-text search) the feature
//! matches on [`Db`] and says so. Schemas live in `migrations/postgres` and `migrations/sqlite`
//! and are embedded in the binary.

use crate::config::{DatabaseConfig, DatabaseUrl};
use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::ConnectOptions as _;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

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
                let opts = PgConnectOptions::from_str(url.as_str())
                    .context("DATABASE_URL is not a usable PostgreSQL URL")?
                    .options([(
                        "statement_timeout",
                        cfg.statement_timeout.as_millis().to_string(),
                    )])
                    .log_statements(log::LevelFilter::Trace)
                    .log_slow_statements(log::LevelFilter::Warn, cfg.slow_statement);
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
