//! Reading the outbox in a commit-order-safe way.
//!
//! An event's place is its [`Position`]: the writing transaction (`tx_id`) and the insertion
//! sequence (`seq`). On PostgreSQL a sequence value is drawn at insert time, so "seq > N" would
//! pass over a row whose transaction commits after a higher one was read. Readers therefore take
//! rows in `(tx_id, seq)` order and only those written by transactions older than the oldest one
//! still running (`pg_snapshot_xmin`): such rows are final, and every row that can still appear
//! has a larger `tx_id`, so it lands after the reader's position. A long transaction delays
//! readers; it never makes them skip. On SQLite one writer holds the database at a time, so `seq`
//! (AUTOINCREMENT) is the commit order and `tx_id` is always 0.

use crate::db::Db;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;

/// Where an event stands in the outbox's reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position { tx: 0, seq: 0 };
}

/// A committed event as consumers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub position: Position,
    pub event_type: String,
    /// What the event is about (an execution, an asset…); a subject's events keep their order.
    pub subject: String,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    tx_id: i64,
    id: String,
    #[sqlx(rename = "type")]
    event_type: String,
    subject_id: String,
    payload: Json<Value>,
    created_at: DateTime<Utc>,
}

impl From<Row> for Event {
    fn from(r: Row) -> Self {
        Event {
            id: r.id,
            position: Position {
                tx: r.tx_id,
                seq: r.seq,
            },
            event_type: r.event_type,
            subject: r.subject_id,
            payload: r.payload.0,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "seq, tx_id, id, type, subject_id, payload, created_at";

/// Final events after `after`, in reading order, at most `limit`, whatever their type (the
/// dispatcher moves a consumer's position past the events it does not take).
pub async fn read_after(db: &Db, after: Position, limit: i64) -> Result<Vec<Event>, sqlx::Error> {
    let rows: Vec<Row> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM events
                  WHERE (tx_id, seq) > ($1, $2)
                    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
                  ORDER BY tx_id, seq LIMIT $3"
            ))
            .bind(after.tx)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        Db::Sqlite(pool) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM events WHERE (tx_id, seq) > ($1, $2) ORDER BY tx_id, seq LIMIT $3"
            ))
            .bind(after.tx)
            .bind(after.seq)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(Event::from).collect())
}

/// One event by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<Event>, sqlx::Error> {
    let row: Option<Row> = crate::with_db!(db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM events WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(Event::from))
}

/// The reading horizon now: every event at or before it is final and visible, every event that
/// can still appear comes after it. A consumer registered now starts here.
pub async fn horizon(db: &Db) -> Result<Position, sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            let xmin: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(pool)
                    .await?;
            Ok(Position {
                tx: xmin - 1,
                seq: i64::MAX,
            })
        }
        Db::Sqlite(pool) => {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
                .fetch_one(pool)
                .await?;
            Ok(Position {
                tx: 0,
                seq: seq.unwrap_or(0),
            })
        }
    }
}

/// How many committed events of `types` come after `after`, and when the oldest was written.
pub async fn count_after(
    db: &Db,
    after: Position,
    types: &[&str],
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    match db {
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM events
                  WHERE (tx_id, seq) > ($1, $2) AND type = ANY($3)",
            )
            .bind(after.tx)
            .bind(after.seq)
            .bind(&types)
            .fetch_one(pool)
            .await
        }
        Db::Sqlite(pool) => {
            // MIN over TEXT times would lose the type: read the oldest row's time separately.
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM events
                  WHERE (tx_id, seq) > ($1, $2) AND type IN (SELECT value FROM json_each($3))",
            )
            .bind(after.tx)
            .bind(after.seq)
            .bind(Json(&types))
            .fetch_one(pool)
            .await?;
            let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT created_at FROM events
                  WHERE (tx_id, seq) > ($1, $2) AND type IN (SELECT value FROM json_each($3))
                  ORDER BY tx_id, seq LIMIT 1",
            )
            .bind(after.tx)
            .bind(after.seq)
            .bind(Json(&types))
            .fetch_optional(pool)
            .await?;
            Ok((n, oldest))
        }
    }
}
