//! The replay log: `ops_events`, append-only, pruned to a bound.
//!
//! Readers take "events after id N", so an id must never become visible after a higher one. On
//! PostgreSQL a BIGSERIAL id is drawn at insert time and a transaction can commit after another
//! that drew a higher one; appends therefore hold a transaction-scoped advisory lock from drawing
//! the id until the commit, so ids commit in order (appends are a few a second: the lock costs
//! nothing that matters). On SQLite the one writer at a time gives the same.

use crate::db::Db;
use crate::with_db;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One logged event.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LoggedEvent {
    pub id: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub data: String,
}

/// Appends an event; returns its id.
pub async fn append(
    db: &Db,
    now: DateTime<Utc>,
    kind: &str,
    data: &impl Serialize,
) -> Result<i64, sqlx::Error> {
    let data = serde_json::to_string(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    const INSERT: &str =
        "INSERT INTO ops_events (type, data, created_at) VALUES ($1, $2, $3) RETURNING id";
    match db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(APPEND_LOCK)
                .execute(&mut *tx)
                .await?;
            let id: i64 = sqlx::query_scalar(INSERT)
                .bind(kind)
                .bind(&data)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(id)
        }
        Db::Sqlite(pool) => {
            sqlx::query_scalar(INSERT)
                .bind(kind)
                .bind(&data)
                .bind(now)
                .fetch_one(pool)
                .await
        }
    }
}

/// The advisory lock key that orders appends ("ops_log" in ASCII).
const APPEND_LOCK: i64 = 0x006f_7073_5f6c_6f67;

/// Events after `id`, oldest first, at most `limit`.
pub async fn after(db: &Db, id: i64, limit: i64) -> Result<Vec<LoggedEvent>, sqlx::Error> {
    Ok(with_db!(db, pool => {
        sqlx::query_as("SELECT id, type, data FROM ops_events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?
    }))
}

/// The oldest and newest ids in the log.
pub async fn bounds(db: &Db) -> Result<(Option<i64>, Option<i64>), sqlx::Error> {
    Ok(with_db!(db, pool => {
        sqlx::query_as("SELECT MIN(id), MAX(id) FROM ops_events").fetch_one(pool).await?
    }))
}

/// Keeps the newest `keep` events and none older than `before`. Returns how many went.
pub async fn prune(db: &Db, keep: i64, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let (_, newest) = bounds(db).await?;
    let floor = newest.unwrap_or(0) - keep;
    Ok(with_db!(db, pool => {
        sqlx::query("DELETE FROM ops_events WHERE id <= $1 OR created_at < $2")
            .bind(floor)
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()
    }))
}
