//! The slowest statements, for `GET /api/ops/db/slow-queries`. On PostgreSQL with the
//! `pg_stat_statements` extension installed in our database, its numbers for our role (every
//! statement the server's instances ran; other roles' sessions — a DBA's `ALTER ROLE … PASSWORD`
//! — are left out). Otherwise this process's slow-statement log: sqlx reports each statement slower than
//! `AIRWAVE_DB_SLOW_STATEMENT_MS` as a `sqlx::query` WARN event, and [`layer`] — a `tracing`
//! layer with its own filter, so it hears them whatever `RUST_LOG` says — folds them into per-
//! statement counts. The log is bounded: at most [`CAPACITY`] statements (the least recently seen
//! goes first), each at most [`MAX_SQL`] characters. SQL carries no parameter values: every query
//! binds them.

use super::Db;
use airwave_api::{SlowQueriesOut, SlowQueryOut, SlowQuerySource};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::Layer;

/// Distinct statements the log keeps.
pub const CAPACITY: usize = 256;
/// Characters of SQL kept per statement.
pub const MAX_SQL: usize = 2_000;

#[derive(Debug, Clone)]
struct Stat {
    calls: i64,
    total_secs: f64,
    max_secs: f64,
    rows: i64,
    last_seen: DateTime<Utc>,
}

static LOG: LazyLock<Mutex<HashMap<String, Stat>>> = LazyLock::new(Mutex::default);

/// Whitespace collapsed to single spaces, cut at [`MAX_SQL`] characters.
fn normalise(sql: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for (i, word) in sql.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += word.chars().count();
        if chars >= MAX_SQL {
            return out.chars().take(MAX_SQL).collect();
        }
    }
    out
}

/// Counts one slow execution of `sql`.
pub fn record(sql: &str, secs: f64, rows: i64, at: DateTime<Utc>) {
    let key = normalise(sql);
    if key.is_empty() {
        return;
    }
    let mut log = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !log.contains_key(&key) && log.len() >= CAPACITY {
        if let Some(oldest) = log
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| k.clone())
        {
            log.remove(&oldest);
        }
    }
    let s = log.entry(key).or_insert(Stat {
        calls: 0,
        total_secs: 0.0,
        max_secs: 0.0,
        rows: 0,
        last_seen: at,
    });
    s.calls += 1;
    s.total_secs += secs;
    s.max_secs = s.max_secs.max(secs);
    s.rows = s.rows.saturating_add(rows);
    s.last_seen = s.last_seen.max(at);
}

/// The log's statements, slowest by mean first.
fn logged(limit: usize) -> Vec<SlowQueryOut> {
    let log = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out: Vec<SlowQueryOut> = log
        .iter()
        .map(|(sql, s)| SlowQueryOut {
            query: sql.clone(),
            calls: s.calls,
            total_ms: s.total_secs * 1e3,
            mean_ms: s.total_secs * 1e3 / s.calls.max(1) as f64,
            max_ms: s.max_secs * 1e3,
            rows: s.rows,
            last_seen_at: Some(s.last_seen),
        })
        .collect();
    out.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    out.truncate(limit);
    out
}

/// The fields of sqlx's slow-statement event.
#[derive(Default)]
struct SlowEvent {
    slow: bool,
    summary: String,
    statement: String,
    secs: f64,
    rows: i64,
}

impl Visit for SlowEvent {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.secs = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        // A statement's rows: those it returned or those it changed (PostgreSQL reports a
        // SELECT's rows as both).
        if matches!(field.name(), "rows_returned" | "rows_affected") {
            self.rows = self.rows.max(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    fn record_debug(&mut self, field: &Field, _: &dyn std::fmt::Debug) {
        if field.name() == "slow_threshold" {
            self.slow = true;
        }
    }
}

struct SlowLayer;

impl<S: tracing::Subscriber> Layer<S> for SlowLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut e = SlowEvent::default();
        event.record(&mut e);
        if !e.slow {
            return;
        }
        // sqlx leaves `db.statement` empty when the summary is the whole statement.
        let sql = if e.statement.trim().is_empty() {
            &e.summary
        } else {
            &e.statement
        };
        record(sql, e.secs, e.rows, Utc::now());
    }
}

/// The layer that keeps the slow-statement log, filtered to sqlx's slow-statement events (WARN
/// on `sqlx::query`, as [`Db::connect`] configures them).
pub fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    SlowLayer.with_filter(Targets::new().with_target("sqlx::query", tracing::Level::WARN))
}

type PgRow = (String, i64, f64, f64, f64, i64);

/// Why `pg_stat_statements` does not answer.
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    #[error("pg_stat_statements is not installed in this database (add it to shared_preload_libraries, then CREATE EXTENSION pg_stat_statements)")]
    NotInstalled,
    #[error("pg_stat_statements cannot be read: {0}")]
    Unreadable(#[from] sqlx::Error),
}

/// `pg_stat_statements` for our database, or why it cannot be read.
async fn from_pg_stat_statements(
    pool: &sqlx::PgPool,
    limit: i64,
) -> Result<Vec<SlowQueryOut>, Unavailable> {
    let installed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
    )
    .fetch_one(pool)
    .await?;
    if !installed {
        return Err(Unavailable::NotInstalled);
    }
    let rows: Vec<PgRow> = sqlx::query_as(
        "SELECT query, calls, total_exec_time, mean_exec_time, max_exec_time, rows
         FROM pg_stat_statements
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
         ORDER BY mean_exec_time DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(query, calls, total, mean, max, rows)| SlowQueryOut {
            query: normalise(&query),
            calls,
            total_ms: total,
            mean_ms: mean,
            max_ms: max,
            rows,
            last_seen_at: None,
        })
        .collect())
}

/// The slowest `limit` statements (1–200) and where the numbers come from.
pub async fn slow_queries(db: &Db, threshold: std::time::Duration, limit: i64) -> SlowQueriesOut {
    let threshold_ms = i64::try_from(threshold.as_millis()).unwrap_or(i64::MAX);
    let note = match db {
        Db::Postgres(pool) => match from_pg_stat_statements(pool, limit).await {
            Ok(queries) => {
                return SlowQueriesOut {
                    source: SlowQuerySource::PgStatStatements,
                    threshold_ms,
                    note: None,
                    queries,
                }
            }
            Err(why) => Some(why.to_string()),
        },
        Db::Sqlite(_) => None,
    };
    SlowQueriesOut {
        source: SlowQuerySource::SlowLog,
        threshold_ms,
        note,
        queries: logged(usize::try_from(limit).unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_folds_repeats_and_stays_bounded() {
        let t = Utc::now();
        record("SELECT  1\n FROM x WHERE id = $1", 0.5, 1, t);
        record("SELECT 1 FROM x WHERE id = $1", 1.5, 2, t);
        let q = logged(CAPACITY + 10);
        let x = q
            .iter()
            .find(|q| q.query == "SELECT 1 FROM x WHERE id = $1")
            .unwrap();
        assert_eq!((x.calls, x.rows), (2, 3));
        assert!((x.mean_ms - 1000.0).abs() < 1e-6 && (x.max_ms - 1500.0).abs() < 1e-6);
        for i in 0..CAPACITY + 5 {
            record(
                &format!("SELECT {i}"),
                0.1,
                0,
                t + chrono::Duration::seconds(i64::try_from(i).unwrap() + 1),
            );
        }
        let q = logged(CAPACITY + 10);
        assert_eq!(q.len(), CAPACITY);
        // The least recently seen went first.
        assert!(!q.iter().any(|q| q.query.contains("FROM x")));
        assert!(q
            .iter()
            .any(|q| q.query == format!("SELECT {}", CAPACITY + 4)));
        assert_eq!(normalise(&"x ".repeat(5000)).chars().count(), MAX_SQL);
    }
}
