//! Database backups proven by restore drills.
//!
//! A backup (`backup.run` job on the `cleanup` queue; scheduled by cron, or on demand) dumps the
//! database (`dump.rs`), records per-table row counts and checksums from the same snapshot
//! (`snapshot.rs`), optionally encrypts (`crypt.rs`), and stores the file through the blob store
//! under `backups/` with its sha256 and size. A drill (`backup.drill`; after each scheduled
//! backup, or on demand) downloads it, checks the sha256, decrypts, restores into a scratch
//! database, and compares the tables: it records how long the restore took (RTO) and how old the
//! data was (RPO). Old backups go by a daily/weekly/monthly retention policy. The `backups`
//! health component warns when the newest good backup is overdue or the last drill failed.

pub mod bench;
pub mod crypt;
pub mod dump;
pub mod health;
pub mod routes;
pub mod settings;
pub mod snapshot;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::ids::{BackupId, DrillId};
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, NewJob};
use crate::state::AppState;
use crate::with_db;
use airwave_api::{BackupOut, BackupStatus, DrillOut, DrillStatus, TableStatOut};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::Digest as _;
use sqlx::types::Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt as _;

pub const RUN: &str = "backup.run";
pub const DRILL: &str = "backup.drill";
pub const SCHEDULED: &str = "backup.scheduled";
/// Where backups live in the blob store.
pub const PREFIX: &str = "backups/";

pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "backups"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn health_checks(
        &self,
        b: &crate::feature::Backends,
    ) -> Vec<Arc<dyn crate::health::HealthCheck>> {
        vec![Arc::new(health::BackupsCheck {
            db: b.db.clone(),
            clock: b.clock.clone(),
            schedule: b.config.backups.schedule.clone(),
            since: b.clock.now(),
        })]
    }

    fn cleanup_jobs(&self, state: &AppState) -> Vec<(&'static str, Arc<dyn JobHandler>)> {
        let handler: Arc<dyn JobHandler> = Arc::new(Jobs {
            state: state.clone(),
        });
        vec![
            (RUN, handler.clone()),
            (DRILL, handler.clone()),
            (SCHEDULED, handler),
        ]
    }

    fn tasks(&self, state: &AppState) -> Vec<crate::feature::Task> {
        let Some(schedule) = state.config.backups.schedule.clone() else {
            return Vec::new();
        };
        let state = state.clone();
        vec![crate::feature::Task::new(
            "backup-schedule",
            crate::feature::Runs::Workers,
            move |stop| {
                let (state, schedule) = (state.clone(), schedule.clone());
                async move {
                    loop {
                        let now = state.clock.now();
                        let Some(next) = schedule.after(&now).next() else {
                            return;
                        };
                        let wait = (next - now).to_std().unwrap_or_default();
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(wait) => {}
                        }
                        let policy = state.queue.policy(crate::queue::retention::QUEUE);
                        let job = NewJob {
                            unique_key: Some(format!("{SCHEDULED}:{}", next.timestamp())),
                            ..policy.job(
                                crate::queue::retention::QUEUE,
                                SCHEDULED,
                                json!({"due": next}),
                            )
                        };
                        if let Err(e) = state.queue.enqueue(job).await {
                            tracing::warn!(error = %e, "scheduling a backup failed");
                        }
                    }
                }
            },
        )]
    }
}

#[derive(sqlx::FromRow)]
struct BackupRow {
    id: String,
    status: String,
    trigger: String,
    database_kind: String,
    format: Option<String>,
    storage_key: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    encrypted: bool,
    tables: Option<Json<Vec<TableStatOut>>>,
    progress: i32,
    duration_ms: Option<i64>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const BACKUP_COLUMNS: &str = "id, status, trigger, database_kind, format, storage_key, size_bytes, sha256, encrypted, tables, progress, duration_ms, error, created_at, started_at, finished_at";

#[derive(sqlx::FromRow)]
struct DrillRow {
    id: String,
    backup_id: String,
    status: String,
    progress: i32,
    restore_ms: Option<i64>,
    rpo_seconds: Option<i64>,
    tables_checked: Option<i32>,
    mismatches: Option<Json<Vec<String>>>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const DRILL_COLUMNS: &str = "id, backup_id, status, progress, restore_ms, rpo_seconds, tables_checked, mismatches, error, created_at, started_at, finished_at";

impl DrillRow {
    fn out(self) -> DrillOut {
        DrillOut {
            id: self.id,
            backup_id: self.backup_id,
            status: self.status.parse().unwrap_or(DrillStatus::Failed),
            progress: self.progress,
            restore_ms: self.restore_ms,
            rpo_seconds: self.rpo_seconds,
            tables_checked: self.tables_checked,
            mismatches: self.mismatches.map(|Json(m)| m).unwrap_or_default(),
            error: self.error,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

impl BackupRow {
    fn out(self, latest_drill: Option<DrillOut>) -> BackupOut {
        BackupOut {
            id: self.id,
            status: self.status.parse().unwrap_or(BackupStatus::Failed),
            trigger: self.trigger,
            database: self.database_kind,
            format: self.format,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            encrypted: self.encrypted,
            progress: self.progress,
            duration_ms: self.duration_ms,
            error: self.error,
            tables: self.tables.map(|Json(t)| t).unwrap_or_default(),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            latest_drill,
        }
    }
}

async fn latest_drill(db: &Db, backup_id: &str) -> Result<Option<DrillOut>> {
    let row: Option<DrillRow> = with_db!(db, pool => {
        sqlx::query_as(&format!("SELECT {DRILL_COLUMNS} FROM backup_drills WHERE backup_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"))
            .bind(backup_id).fetch_optional(pool).await?
    });
    Ok(row.map(DrillRow::out))
}

async fn load_backup(db: &Db, id: &str) -> Result<BackupRow> {
    let row: Option<BackupRow> = with_db!(db, pool => {
        sqlx::query_as(&format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1")).bind(id).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("backup"))
}

pub async fn get(state: &AppState, id: &str) -> Result<BackupOut> {
    let row = load_backup(&state.db, id).await?;
    let drill = latest_drill(&state.db, &row.id).await?;
    Ok(row.out(drill))
}

pub async fn get_drill(state: &AppState, id: &str) -> Result<DrillOut> {
    let row: Option<DrillRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {DRILL_COLUMNS} FROM backup_drills WHERE id = $1")).bind(id).fetch_optional(pool).await?
    });
    row.map(DrillRow::out)
        .ok_or_else(|| Error::not_found("drill"))
}

/// The newest backups first, each with its latest drill.
pub async fn list(state: &AppState, limit: i64) -> Result<Vec<BackupOut>> {
    let rows: Vec<BackupRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {BACKUP_COLUMNS} FROM backups ORDER BY created_at DESC, id DESC LIMIT $1")).bind(limit).fetch_all(pool).await?
    });
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let d = latest_drill(&state.db, &r.id).await?;
        out.push(r.out(d));
    }
    Ok(out)
}

fn kind_of(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => "postgres",
        Db::Sqlite(_) => "sqlite",
    }
}

async fn insert_backup(state: &AppState, trigger: &str, who: Option<&str>) -> Result<BackupId> {
    let now = state.clock.now();
    let id = BackupId::new(now);
    with_db!(&state.db, pool => {
        sqlx::query("INSERT INTO backups (id, status, trigger, database_kind, encrypted, requested_by, created_at) VALUES ($1, 'queued', $2, $3, $4, $5, $6)")
            .bind(id.as_str()).bind(trigger).bind(kind_of(&state.db)).bind(state.config.backups.key.is_some()).bind(who).bind(now)
            .execute(pool).await?;
    });
    Ok(id)
}

async fn enqueue(state: &AppState, kind: &str, payload: Value) -> Result<()> {
    let policy = state.queue.policy(crate::queue::retention::QUEUE);
    state
        .queue
        .enqueue(policy.job(crate::queue::retention::QUEUE, kind, payload))
        .await
        .map_err(|e| Error::Unavailable {
            code: "queue_unavailable",
            detail: format!("the backup could not be queued: {e}"),
            retry_after: std::time::Duration::from_secs(5),
        })?;
    Ok(())
}

/// `POST /api/ops/backups`: a backup now (queued; poll it for progress).
pub async fn request_backup(state: &AppState, who: Option<&str>) -> Result<BackupOut> {
    let busy: Option<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM backups WHERE status IN ('queued', 'running') LIMIT 1").fetch_optional(pool).await?
    });
    if let Some(b) = busy {
        return Err(Error::conflict(
            "backup_running",
            format!("backup {b} is queued or running: wait for it"),
        ));
    }
    let id = insert_backup(state, "manual", who).await?;
    enqueue(state, RUN, json!({"backup_id": id})).await?;
    get(state, id.as_str()).await
}

/// A manual backup row for the CLI (which runs it in its own process).
pub async fn insert_for_cli(state: &AppState) -> Result<BackupId> {
    insert_backup(state, "manual", Some("cli")).await
}

/// A drill row, queued, for a succeeded backup (409 otherwise).
async fn insert_drill(state: &AppState, backup_id: &str, who: Option<&str>) -> Result<DrillId> {
    let b = load_backup(&state.db, backup_id).await?;
    if b.status != "succeeded" {
        return Err(Error::conflict(
            "backup_not_ready",
            format!(
                "backup {backup_id} is {}: only a succeeded backup can be drilled",
                b.status
            ),
        ));
    }
    let now = state.clock.now();
    let id = DrillId::new(now);
    with_db!(&state.db, pool => {
        sqlx::query("INSERT INTO backup_drills (id, backup_id, status, requested_by, created_at) VALUES ($1, $2, 'queued', $3, $4)")
            .bind(id.as_str()).bind(backup_id).bind(who).bind(now).execute(pool).await?;
    });
    Ok(id)
}

/// A drill of `backup_id` run in this process (the CLI), with its result.
pub async fn drill_for_cli(state: &AppState, backup_id: &str) -> Result<DrillOut> {
    let id = insert_drill(state, backup_id, Some("cli")).await?;
    run_drill(state, id.as_str()).await?;
    get_drill(state, id.as_str()).await
}

/// `POST /api/ops/backups/{id}/verify`: a restore drill of a good backup (queued).
pub async fn request_drill(
    state: &AppState,
    backup_id: &str,
    who: Option<&str>,
) -> Result<DrillOut> {
    let busy: Option<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM backup_drills WHERE backup_id = $1 AND status IN ('queued', 'running') LIMIT 1").bind(backup_id).fetch_optional(pool).await?
    });
    if let Some(d) = busy {
        return Err(Error::conflict(
            "drill_running",
            format!("drill {d} of this backup is queued or running: wait for it"),
        ));
    }
    let id = insert_drill(state, backup_id, who).await?;
    enqueue(state, DRILL, json!({"drill_id": id})).await?;
    get_drill(state, id.as_str()).await
}

/// What a failed run records: an internal error with its whole chain of causes.
fn failure_text(e: &Error) -> String {
    match e {
        Error::Internal(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

async fn progress(db: &Db, table: &str, id: &str, p: i32) {
    let sql = format!("UPDATE {table} SET progress = $2 WHERE id = $1");
    let r: Result<()> = async {
        with_db!(db, pool => { sqlx::query(&sql).bind(id).bind(p).execute(pool).await?; });
        Ok(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "recording progress");
    }
}

fn work_dir(state: &AppState) -> PathBuf {
    state.config.data_dir.join("backups-work")
}

/// Removes the work files of one run, whatever happened.
struct WorkFiles(Vec<PathBuf>);

impl Drop for WorkFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn live_pg_url(state: &AppState) -> Result<url::Url> {
    match &state.config.database.url {
        crate::db::DatabaseUrl::Postgres(u) => Ok(u.clone()),
        crate::db::DatabaseUrl::Sqlite(_) => Err(Error::Internal(anyhow::anyhow!(
            "not a PostgreSQL database"
        ))),
    }
}

fn failed<E: std::fmt::Display>(e: E) -> Error {
    Error::Internal(anyhow::anyhow!("{e}"))
}

/// Takes backup `id` (queued): dump, record, encrypt, store, keep by the retention policy.
pub async fn run_backup(state: &AppState, id: &str) -> Result<()> {
    let started = Instant::now();
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE backups SET status = 'running', started_at = $2, progress = 5 WHERE id = $1").bind(id).bind(now).execute(pool).await?;
    });
    let outcome = take(state, id).await;
    let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let done = state.clock.now();
    match outcome {
        Ok(t) => {
            with_db!(&state.db, pool => {
                sqlx::query("UPDATE backups SET status = 'succeeded', progress = 100, format = $2, storage_key = $3, size_bytes = $4, sha256 = $5, tables = $6, duration_ms = $7, finished_at = $8, encrypted = $9 WHERE id = $1")
                    .bind(id).bind(t.format.as_str()).bind(&t.key).bind(t.size).bind(&t.sha256).bind(Json(&t.tables)).bind(took).bind(done).bind(t.encrypted)
                    .execute(pool).await?;
            });
            if let Err(e) = apply_retention(state).await {
                tracing::warn!(error = %e, "applying backup retention failed");
            }
            Ok(())
        }
        Err(e) => {
            let why = failure_text(&e);
            with_db!(&state.db, pool => {
                sqlx::query("UPDATE backups SET status = 'failed', error = $2, duration_ms = $3, finished_at = $4 WHERE id = $1")
                    .bind(id).bind(&why).bind(took).bind(done).execute(pool).await?;
            });
            Err(Error::Internal(anyhow::anyhow!(why)))
        }
    }
}

struct Taken {
    format: dump::Format,
    key: String,
    size: i64,
    sha256: String,
    encrypted: bool,
    tables: Vec<TableStatOut>,
}

async fn take(state: &AppState, id: &str) -> Result<Taken> {
    let work = work_dir(state);
    work_folder(&work).await?;
    let dumped = match &state.db {
        Db::Sqlite(pool) => dump::sqlite(pool, &work, id).await,
        Db::Postgres(pool) => dump::postgres(pool, &live_pg_url(state)?, &work, id).await,
    };
    let dumped = dumped.map_err(failed)?;
    let mut files = WorkFiles(vec![dumped.file.clone()]);
    progress(&state.db, "backups", id, 50).await;
    let mut file = dumped.file.clone();
    let mut key = format!("{PREFIX}{id}.{}", dumped.format.extension());
    let encrypted = state.config.backups.key.is_some();
    if let Some(k) = state.config.backups.key.clone() {
        let sealed = work.join(format!("{id}.aes"));
        files.0.push(sealed.clone());
        let (from, to) = (file.clone(), sealed.clone());
        tokio::task::spawn_blocking(move || crypt::encrypt(&k, &from, &to))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        file = sealed;
        key.push_str(".aes");
    }
    progress(&state.db, "backups", id, 60).await;
    let f = tokio::fs::File::open(&file).await.map_err(failed)?;
    let body: crate::storage::ByteStream =
        Box::pin(tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024));
    let written = state
        .blobs
        .put_stream(&key, body, "application/octet-stream", u64::MAX)
        .await
        .map_err(failed)?;
    drop(files);
    let taken = Taken {
        format: dumped.format,
        key,
        size: i64::try_from(written.size).unwrap_or(i64::MAX),
        sha256: hex::encode(written.sha256),
        encrypted,
        tables: dumped.tables,
    };
    let manifest = Manifest {
        id: id.to_owned(),
        database: kind_of(&state.db).to_owned(),
        format: taken.format.as_str().to_owned(),
        key: taken.key.clone(),
        size_bytes: taken.size,
        sha256: taken.sha256.clone(),
        encrypted,
        started_at: Some(state.clock.now()),
        tables: taken.tables.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(failed)?;
    state
        .blobs
        .put(&manifest_key(id), json, "application/json")
        .await
        .map_err(failed)?;
    Ok(taken)
}

/// Downloads a stored backup into `to`, checking its sha256 against the recorded one.
async fn download(
    blobs: &dyn crate::storage::BlobStore,
    key: &str,
    sha256: &str,
    to: &Path,
) -> Result<()> {
    use futures_util::TryStreamExt as _;
    let mut reading = blobs.get_stream(key, None).await.map_err(failed)?;
    let mut out = tokio::fs::File::create(to).await.map_err(failed)?;
    let mut h = sha2::Sha256::new();
    while let Some(chunk) = reading.body.try_next().await.map_err(failed)? {
        h.update(&chunk);
        out.write_all(&chunk).await.map_err(failed)?;
    }
    out.sync_all().await.map_err(failed)?;
    let got = hex::encode(h.finalize());
    if got != sha256 {
        return Err(failed(format!(
            "the stored backup is corrupt: its sha256 is {got}, the backup recorded {sha256}"
        )));
    }
    Ok(())
}

/// What a stored backup is, written beside it (`backups/<id>.json`), so a restore needs only the
/// blob store — not the database it may be replacing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub id: String,
    pub database: String,
    pub format: String,
    pub key: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub encrypted: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub tables: Vec<TableStatOut>,
}

pub fn manifest_key(id: &str) -> String {
    format!("{PREFIX}{id}.json")
}

impl BackupRow {
    fn manifest(&self) -> Result<Manifest> {
        let (Some(key), Some(sha), Some(format)) = (
            self.storage_key.clone(),
            self.sha256.clone(),
            self.format.clone(),
        ) else {
            return Err(failed(format!("backup {} has no stored file", self.id)));
        };
        Ok(Manifest {
            id: self.id.clone(),
            database: self.database_kind.clone(),
            format,
            key,
            size_bytes: self.size_bytes.unwrap_or(0),
            sha256: sha,
            encrypted: self.encrypted,
            started_at: self.started_at,
            tables: self
                .tables
                .as_ref()
                .map(|Json(t)| t.clone())
                .unwrap_or_default(),
        })
    }
}

/// Reads a backup's manifest from the blob store.
pub async fn read_manifest(
    blobs: &dyn crate::storage::BlobStore,
    id: &str,
) -> anyhow::Result<Manifest> {
    crate::storage::check_key(&manifest_key(id))
        .map_err(|_| anyhow::anyhow!("`{id}` is not a backup id"))?;
    let bytes = match blobs.get_bounded(&manifest_key(id), 16 << 20).await {
        Ok(b) => b,
        Err(crate::storage::StorageError::NotFound(_)) => {
            anyhow::bail!("no backup {id} in the blob store (no {})", manifest_key(id))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(serde_json::from_slice(&bytes)?)
}

/// A private work folder (0700): dumps and decrypted copies never lie readable by others, and
/// what a killed run left there (older than a day) is removed.
async fn work_folder(dir: &Path) -> Result<()> {
    let d = dir.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&d)?;
        #[cfg(unix)]
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let day = std::time::Duration::from_secs(24 * 3600);
        for e in std::fs::read_dir(&d)?.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > day);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    })
    .await
    .map_err(failed)?
    .map_err(failed)
}

/// A stored backup, downloaded, checked and decrypted: the plain dump on local disk.
async fn fetch_plain(
    blobs: &dyn crate::storage::BlobStore,
    key: Option<&secrecy::SecretSlice<u8>>,
    work: &Path,
    m: &Manifest,
    name: &str,
    files: &mut WorkFiles,
) -> Result<(PathBuf, dump::Format)> {
    work_folder(work).await?;
    let format = dump::Format::parse(&m.format).ok_or_else(|| {
        failed(format!(
            "backup {} has an unknown format `{}`",
            m.id, m.format
        ))
    })?;
    let fetched = work.join(format!("{name}.fetched"));
    files.0.push(fetched.clone());
    download(blobs, &m.key, &m.sha256, &fetched).await?;
    if !m.encrypted {
        return Ok((fetched, format));
    }
    let Some(k) = key.cloned() else {
        return Err(failed(
            "the backup is encrypted and AIRWAVE_BACKUP_ENCRYPTION_KEY is not set",
        ));
    };
    let plain = work.join(format!("{name}.plain"));
    files.0.push(plain.clone());
    let (from, to) = (fetched, plain.clone());
    tokio::task::spawn_blocking(move || crypt::decrypt(&k, &from, &to))
        .await
        .map_err(failed)?
        .map_err(failed)?;
    Ok((plain, format))
}

/// Runs drill `id` (queued): restore into scratch, compare, time it.
pub async fn run_drill(state: &AppState, id: &str) -> Result<()> {
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE backup_drills SET status = 'running', started_at = $2, progress = 5 WHERE id = $1").bind(id).bind(now).execute(pool).await?;
    });
    let drill = get_drill(state, id).await?;
    let backup = load_backup(&state.db, &drill.backup_id).await?;
    let rpo = backup.started_at.map(|t| (now - t).num_seconds());
    let started = Instant::now();
    let outcome = restore_and_compare(state, id, &backup, started).await;
    let done = state.clock.now();
    let (status, restore_ms, checked, mismatches, error) = match outcome {
        Ok((ms, checked, m)) => (
            if m.is_empty() { "passed" } else { "failed" },
            Some(ms),
            Some(checked),
            m,
            None,
        ),
        Err(e) => ("failed", None, None, Vec::new(), Some(failure_text(&e))),
    };
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE backup_drills SET status = $2, progress = 100, restore_ms = $3, rpo_seconds = $4, tables_checked = $5, mismatches = $6, error = $7, finished_at = $8 WHERE id = $1")
            .bind(id).bind(status).bind(restore_ms).bind(rpo).bind(checked).bind(Json(&mismatches)).bind(&error).bind(done)
            .execute(pool).await?;
    });
    Ok(())
}

async fn restore_and_compare(
    state: &AppState,
    id: &str,
    b: &BackupRow,
    started: Instant,
) -> Result<(i64, i32, Vec<String>)> {
    let mut files = WorkFiles(Vec::new());
    let m = b.manifest()?;
    let (plain, format) = fetch_plain(
        state.blobs.as_ref(),
        state.config.backups.key.as_ref(),
        &work_dir(state),
        &m,
        id,
        &mut files,
    )
    .await?;
    progress(&state.db, "backup_drills", id, 40).await;
    let recorded = b
        .tables
        .as_ref()
        .map(|Json(t)| t.clone())
        .unwrap_or_default();
    let (restored, ms) = match format {
        dump::Format::SqliteGzip => {
            let db = work_dir(state).join(format!("{id}.restored.db"));
            files.0.push(db.clone());
            let (from, to) = (plain.clone(), db.clone());
            tokio::task::spawn_blocking(move || crypt::gunzip(&from, &to))
                .await
                .map_err(failed)?
                .map_err(failed)?;
            let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            progress(&state.db, "backup_drills", id, 70).await;
            (dump::sqlite_stats(&db).await.map_err(failed)?, ms)
        }
        dump::Format::PgCustom => {
            let live = live_pg_url(state)?;
            let admin = match &state.config.backups.drill_url {
                Some(u) => dump::with_password_of(u, &state.config.database.url),
                None => live.clone(),
            };
            let scratch = format!(
                "airwave_drill_{}",
                id.trim_start_matches("drl_").to_ascii_lowercase()
            );
            let target = dump::create_scratch(&admin, &scratch)
                .await
                .map_err(failed)?;
            let result = async {
                dump::pg_restore(&plain, &target, false)
                    .await
                    .map_err(failed)?;
                let ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
                progress(&state.db, "backup_drills", id, 70).await;
                let stats = dump::pg_stats(&target, &recorded).await.map_err(failed)?;
                Ok::<_, Error>((stats, ms))
            }
            .await;
            if let Err(e) = dump::drop_scratch(&admin, &scratch).await {
                tracing::warn!(error = %e, database = %scratch, "dropping a drill's scratch database failed");
            }
            result?
        }
    };
    let checked = i32::try_from(restored.len()).unwrap_or(i32::MAX);
    Ok((ms, checked, snapshot::differences(&recorded, &restored)))
}

/// Restores backup `id` into the database at `target` (the CLI's `backup restore`), from the
/// blob store alone: its manifest says what it is, so the live database (which may be the one
/// lost) is neither needed nor touched. The live database is refused unless `force_live`.
pub async fn restore_into(
    config: &crate::config::Config,
    id: &str,
    target: &str,
    force_live: bool,
) -> anyhow::Result<Vec<TableStatOut>> {
    refuse_live(config, target, force_live).await?;
    let blobs = config.storage.open().await;
    let m = read_manifest(blobs.as_ref(), id).await?;
    let work = config.data_dir.join("backups-work");
    let mut files = WorkFiles(Vec::new());
    let (plain, format) = fetch_plain(
        blobs.as_ref(),
        config.backups.key.as_ref(),
        &work,
        &m,
        &format!("{id}.restore"),
        &mut files,
    )
    .await?;
    match format {
        dump::Format::SqliteGzip => {
            let path = sqlite_target(target).ok_or_else(|| {
                anyhow::anyhow!("a SQLite backup restores into a sqlite:// target")
            })?;
            let partial = path.with_extension("restoring");
            let (from, to) = (plain.clone(), partial.clone());
            tokio::task::spawn_blocking(move || crypt::gunzip(&from, &to)).await??;
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            std::fs::rename(&partial, &path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(dump::sqlite_stats(&path).await?)
        }
        dump::Format::PgCustom => {
            let url = url::Url::parse(target)?;
            if !["postgres", "postgresql"].contains(&url.scheme()) {
                anyhow::bail!("a PostgreSQL backup restores into a postgres:// target");
            }
            dump::pg_restore(&plain, &url, true).await?;
            Ok(dump::pg_stats(&url, &m.tables).await?)
        }
    }
}

fn sqlite_target(target: &str) -> Option<PathBuf> {
    let path = target.strip_prefix("sqlite://")?;
    Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
}

/// A restore over the live database needs `force_live`. SQLite: the same file. PostgreSQL: the
/// same database on the same server, asked of the servers themselves (a host name and an
/// address, or an alias, name one server), not read from the URLs.
async fn refuse_live(
    config: &crate::config::Config,
    target: &str,
    force_live: bool,
) -> anyhow::Result<()> {
    if force_live {
        return Ok(());
    }
    let live = match &config.database.url {
        crate::db::DatabaseUrl::Sqlite(live) => sqlite_target(target).is_some_and(|path| {
            std::fs::canonicalize(live)
                .ok()
                .zip(std::fs::canonicalize(&path).ok())
                .is_some_and(|(a, b)| a == b)
        }),
        crate::db::DatabaseUrl::Postgres(live) => match url::Url::parse(target) {
            Ok(t) if dump::same_pg_database(live, &t) => true,
            Ok(t) => match (dump::identity(live).await, dump::identity(&t).await) {
                (Ok(a), Ok(b)) => a == b,
                // The live database cannot be reached (lost?): it cannot be the target.
                (Err(_), Ok(_)) => false,
                (_, Err(e)) => anyhow::bail!("cannot connect to the target: {e}"),
            },
            Err(_) => false,
        },
    };
    if live {
        anyhow::bail!("the target is the live database: stop every server, then pass --force-live (and confirm) to restore over it");
    }
    Ok(())
}

/// The backups a daily/weekly/monthly policy keeps: the newest of each of the last `daily` days,
/// `weekly` ISO weeks and `monthly` months that have one (the newest backup always).
pub fn to_keep(
    mut times: Vec<(String, DateTime<Utc>)>,
    daily: usize,
    weekly: usize,
    monthly: usize,
) -> std::collections::HashSet<String> {
    use chrono::Datelike as _;
    times.sort_by_key(|t| std::cmp::Reverse(t.1));
    let mut keep = std::collections::HashSet::new();
    if let Some((id, _)) = times.first() {
        keep.insert(id.clone());
    }
    let mut pick = |n: usize, bucket: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
        let mut seen = Vec::new();
        for (id, t) in &times {
            let b = bucket(t);
            if seen.contains(&b) {
                continue;
            }
            if seen.len() == n {
                break;
            }
            seen.push(b);
            keep.insert(id.clone());
        }
    };
    pick(daily, &|t| (t.year(), t.ordinal()));
    pick(weekly, &|t| (t.iso_week().year(), t.iso_week().week()));
    pick(monthly, &|t| (t.year(), t.month()));
    keep
}

/// Applies the retention policy. Backups whose latest drill passed fill its buckets (once any
/// has passed: before that, all succeeded ones do), so unverified backups never push a verified
/// one out; the newest backup and the newest verified one are always kept, and one with a drill
/// queued or running is never touched.
async fn apply_retention(state: &AppState) -> Result<()> {
    let c = &state.config.backups;
    // (id, created, file key, latest finished drill's status)
    type Kept = (String, DateTime<Utc>, Option<String>, Option<String>);
    let rows: Vec<Kept> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT b.id, b.created_at, b.storage_key,
                               (SELECT d.status FROM backup_drills d WHERE d.backup_id = b.id AND d.status IN ('passed', 'failed') ORDER BY d.finished_at DESC LIMIT 1)
                        FROM backups b WHERE b.status = 'succeeded'
                        AND NOT EXISTS (SELECT 1 FROM backup_drills d WHERE d.backup_id = b.id AND d.status IN ('queued', 'running'))").fetch_all(pool).await?
    });
    let verified: Vec<(String, DateTime<Utc>)> = rows
        .iter()
        .filter(|r| r.3.as_deref() == Some("passed"))
        .map(|r| (r.0.clone(), r.1))
        .collect();
    let all: Vec<(String, DateTime<Utc>)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let mut keep = to_keep(
        if verified.is_empty() {
            all.clone()
        } else {
            verified.clone()
        },
        c.keep_daily,
        c.keep_weekly,
        c.keep_monthly,
    );
    for newest in [
        all.iter().max_by_key(|r| r.1),
        verified.iter().max_by_key(|r| r.1),
    ]
    .into_iter()
    .flatten()
    {
        keep.insert(newest.0.clone());
    }
    for (id, _, key, _) in rows.iter().filter(|r| !keep.contains(&r.0)) {
        if let Some(k) = key {
            state.blobs.delete(k).await.map_err(failed)?;
        }
        state
            .blobs
            .delete(&manifest_key(id))
            .await
            .map_err(failed)?;
        with_db!(&state.db, pool => {
            sqlx::query("DELETE FROM backups WHERE id = $1").bind(id).execute(pool).await?;
        });
        tracing::info!(backup = %id, "backup removed by the retention policy");
    }
    // Failed attempts are history for a month.
    let month_ago = state.clock.now() - chrono::Duration::days(30);
    with_db!(&state.db, pool => {
        sqlx::query("DELETE FROM backups WHERE status = 'failed' AND created_at < $1").bind(month_ago).execute(pool).await?;
    });
    Ok(())
}

/// The three jobs.
struct Jobs {
    state: AppState,
}

fn payload_str<'a>(job: &'a Job, field: &str) -> Result<&'a str, JobFailure> {
    job.payload
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| JobFailure::permanent("backup.payload", format!("the job has no `{field}`")))
}

#[async_trait]
impl JobHandler for Jobs {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> Result<Value, JobFailure> {
        let s = &self.state;
        let _ = ctx.progress(5, Some("starting")).await;
        match job.kind.as_str() {
            RUN => {
                let id = payload_str(job, "backup_id")?;
                run_backup(s, id)
                    .await
                    .map_err(|e| JobFailure::permanent("backup.run", e.to_string()))?;
                Ok(json!({"backup_id": id}))
            }
            DRILL => {
                let id = payload_str(job, "drill_id")?;
                run_drill(s, id)
                    .await
                    .map_err(|e| JobFailure::retryable("backup.drill", e.to_string()))?;
                let d = get_drill(s, id)
                    .await
                    .map_err(|e| JobFailure::retryable("backup.drill", e.to_string()))?;
                Ok(json!({"drill_id": id, "status": d.status, "restore_ms": d.restore_ms}))
            }
            _ => {
                // Scheduled: one backup per due time, however many workers enqueued it.
                let due: Option<DateTime<Utc>> = job
                    .payload
                    .get("due")
                    .and_then(|d| serde_json::from_value(d.clone()).ok());
                if let Some(due) = due {
                    let taken: Option<String> = with_db!(&s.db, pool => {
                        sqlx::query_scalar("SELECT id FROM backups WHERE trigger = 'scheduled' AND created_at >= $1 LIMIT 1")
                            .bind(due).fetch_optional(pool).await.map_err(|e| JobFailure::retryable("backup.scheduled", e.to_string()))?
                    });
                    if let Some(id) = taken {
                        return Ok(json!({"skipped": "already taken", "backup_id": id}));
                    }
                }
                let id = insert_backup(s, "scheduled", None)
                    .await
                    .map_err(|e| JobFailure::retryable("backup.scheduled", e.to_string()))?;
                run_backup(s, id.as_str())
                    .await
                    .map_err(|e| JobFailure::permanent("backup.scheduled", e.to_string()))?;
                if s.config.backups.drill_after_each {
                    request_drill(s, id.as_str(), None)
                        .await
                        .map_err(|e| JobFailure::retryable("backup.scheduled", e.to_string()))?;
                }
                Ok(json!({"backup_id": id}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn retention_keeps_the_newest_of_each_day_week_and_month() {
        // One backup a day at 03:00 for 120 days, and a second one on the last day.
        let mut times: Vec<(String, DateTime<Utc>)> = (0..120)
            .map(|d| {
                (
                    format!("b{d:03}"),
                    Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap() + chrono::Duration::days(d),
                )
            })
            .collect();
        times.push((
            "extra".into(),
            Utc.with_ymd_and_hms(2026, 4, 30, 12, 0, 0).unwrap(),
        ));
        let keep = to_keep(times, 7, 4, 6);
        assert!(keep.contains("extra"), "the newest");
        assert!(!keep.contains("b119"), "the same day's older one goes");
        for d in 113..119 {
            assert!(keep.contains(&format!("b{d:03}")), "daily b{d:03}");
        }
        // Weeks and months add a few older ones; far fewer than 121 are kept.
        assert!(keep.len() <= 7 + 4 + 6, "{}", keep.len());
        assert!(
            keep.contains("b000") || keep.contains("b030"),
            "a monthly one from January"
        );
        assert_eq!(to_keep(Vec::new(), 7, 4, 6).len(), 0);
    }
}
