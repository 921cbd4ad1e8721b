//! The server crate's integration tests: seams tested against real backends. The database comes
//! from `AIRWAVE_TEST_DB` (`sqlite` by default, `postgres` with `AIRWAVE_TEST_PG_URL`), one fresh
//! database per test.

#![allow(clippy::unwrap_used)]

mod events;
mod queue;
mod redis_chaos;

use airwave_server::clock::ManualClock;
use airwave_server::config::{Config, DatabaseConfig, DatabaseUrl};
use airwave_server::db::Db;
use std::sync::Arc;

/// A fresh, migrated database, and what keeps it alive (the SQLite file's folder).
pub async fn fresh_db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match std::env::var("AIRWAVE_TEST_DB").as_deref() {
        Ok("postgres") => {
            let admin = std::env::var("AIRWAVE_TEST_PG_URL")
                .expect("AIRWAVE_TEST_DB=postgres needs AIRWAVE_TEST_PG_URL");
            let name = format!("airwave_it_{}_{}", std::process::id(), rand_suffix());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let mut u = url::Url::parse(&admin).unwrap();
            u.set_path(&name);
            DatabaseUrl::Postgres(u)
        }
        _ => DatabaseUrl::Sqlite(dir.path().join("test.db")),
    };
    let defaults = Config::from_vars(&Default::default()).unwrap().database;
    let db = Db::connect(&DatabaseConfig {
        url,
        max_connections: 20,
        ..defaults
    })
    .await
    .unwrap();
    db.migrate().await.unwrap();
    (db, dir)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}_{}", N.fetch_add(1, Ordering::Relaxed))
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc::now()))
}
