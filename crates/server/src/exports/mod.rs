//! Campaign exports: a campaign's approved renders and a `manifest.json` packaged into one zip in
//! the blob store.
//!
//! `POST /api/campaigns/{id}/exports` records an export (`queued`) and queues an `export.build`
//! job on the `cleanup` queue. The job streams every approved render out of the blob store into a
//! zip writer (stored entries: videos and images are compressed already) whose output is, through
//! an in-memory pipe, the body of one streamed `put` — so memory stays flat whatever the campaign
//! weighs, and a half-written archive is never stored (`archive.rs`). Each file's sha256 is taken on
//! the way through and written into the manifest, which is the archive's last entry. Completion
//! records the archive's size and sha256 and commits an `export.ready` event in the same
//! transaction. `GET …/exports/{id}` answers the status and, once ready, a signed expiring link.

pub mod archive;
pub mod routes;
pub mod settings;

use crate::auth::Principal;
use crate::clients::ensure_can_write;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{CampaignId, ExportId};
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure};
use crate::state::AppState;
use crate::{emit_event, with_db};
use airwave_api::{ExportOut, ExportStatus};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;

pub const BUILD: &str = "export.build";
/// Exports listed per campaign.
const LIST_LIMIT: i64 = 50;

pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "exports"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn cleanup_jobs(&self, state: &AppState) -> Vec<(&'static str, Arc<dyn JobHandler>)> {
        vec![(
            BUILD,
            Arc::new(Build {
                state: state.clone(),
            }),
        )]
    }
}

/// Where an export's archive lives.
pub fn archive_key(client_id: &str, export_id: &str) -> String {
    format!("clients/{client_id}/exports/{export_id}.zip")
}

#[derive(sqlx::FromRow)]
struct ExportRow {
    id: String,
    campaign_id: String,
    client_id: String,
    format: String,
    status: String,
    progress: i32,
    renders: Option<i32>,
    storage_key: Option<String>,
    size_bytes: Option<i64>,
    sha256: Option<String>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, campaign_id, client_id, format, status, progress, renders, storage_key, size_bytes, sha256, error, created_at, started_at, finished_at";

impl ExportRow {
    fn out(self, download: Option<airwave_api::DownloadUrlOut>) -> Result<ExportOut> {
        Ok(ExportOut {
            status: self
                .status
                .parse::<ExportStatus>()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            id: self.id,
            campaign_id: self.campaign_id,
            client_id: self.client_id,
            format: self.format,
            progress: self.progress,
            renders: self.renders,
            size_bytes: self.size_bytes,
            sha256: self.sha256,
            error: self.error,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            download,
        })
    }
}

/// One approved render of the campaign, with the approval that let it in.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Approved {
    pub execution_id: String,
    pub matrix_id: String,
    pub output_key: String,
    pub params: sqlx::types::Json<Value>,
    pub rendered_at: DateTime<Utc>,
    pub approval_id: String,
    pub reviewer_email: Option<String>,
    pub comment: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// The campaign's completed executions whose latest decision is an approval, oldest first.
async fn approved(state: &AppState, campaign_id: &str, limit: i64) -> Result<Vec<Approved>> {
    Ok(with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT e.id AS execution_id, e.matrix_id, e.output_key, e.params, e.updated_at AS rendered_at,
                    a.id AS approval_id, a.reviewer_email, a.comment, a.decided_at
             FROM executions e
             JOIN approval_workflows a ON a.execution_id = e.id AND a.status = 'approved'
             WHERE e.campaign_id = $1 AND e.status = 'completed' AND e.output_key IS NOT NULL
               AND a.id = (SELECT x.id FROM approval_workflows x
                           WHERE x.execution_id = e.id AND x.status IN ('approved', 'rejected')
                           ORDER BY x.decided_at DESC, x.id DESC LIMIT 1)
             ORDER BY e.id LIMIT $2",
        )
        .bind(campaign_id)
        .bind(limit)
        .fetch_all(pool)
        .await?
    }))
}

/// `POST /api/campaigns/{id}/exports`: records an export and queues its job.
pub async fn request(
    state: &AppState,
    who: &Principal,
    campaign: &CampaignId,
) -> Result<ExportOut> {
    let c = crate::campaigns::load_campaign(state, who, campaign).await?;
    ensure_can_write(state, who, &c.client_id).await?;
    let max = state.config.exports.max_renders;
    let renders = approved(state, &c.id, max + 1).await?;
    if renders.is_empty() {
        return Err(Error::conflict(
            "nothing_to_export",
            "this campaign has no approved renders to export",
        ));
    }
    if i64::try_from(renders.len()).unwrap_or(i64::MAX) > max {
        return Err(Error::conflict(
            "export_too_large",
            format!("this campaign has more than {max} approved renders, the most one export holds (AIRWAVE_EXPORT_MAX_RENDERS)"),
        ));
    }
    let now = state.clock.now();
    fail_stale(state, &c.id, now).await?;
    let id = ExportId::new(now);
    // One statement, no transaction: a refused insert (`export_running`) must not leave an
    // aborted transaction open on a pooled connection (on PostgreSQL that would hold back the
    // outbox's `pg_snapshot_xmin` for every database on the server until the connection is reused).
    let row: ExportRow = with_db!(&state.db, pool => {
        let row: ExportRow = sqlx::query_as(&format!(
            "INSERT INTO exports (id, campaign_id, client_id, format, status, renders, requested_by, created_at, updated_at)
             VALUES ($1, $2, $3, 'zip', 'queued', $4, $5, $6, $6) RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(&c.id)
        .bind(&c.client_id)
        .bind(i32::try_from(renders.len()).unwrap_or(i32::MAX))
        .bind(who.user_id.as_str())
        .bind(now)
        .fetch_one(pool)
        .await
        .map_err(|e| Error::from(e).on_unique("export_running", "an export of this campaign is queued or running: wait for it"))?;
        // The job goes in once the row has committed (the job reads it). If it cannot be
        // queued the row is failed at once; if the process dies between the two, the row goes
        // stale and the next request fails it (`fail_stale`).
        let policy = state.queue.policy(crate::queue::retention::QUEUE);
        let job = policy.job(crate::queue::retention::QUEUE, BUILD, json!({"export_id": id}));
        if let Err(e) = state.queue.enqueue(job).await {
            sqlx::query("UPDATE exports SET status = 'failed', error = $2, updated_at = $3 WHERE id = $1")
                .bind(id.as_str()).bind("the export could not be queued").bind(now).execute(pool).await?;
            return Err(Error::Unavailable {
                code: "queue_unavailable",
                detail: format!("the export could not be queued: {e}"),
                retry_after: std::time::Duration::from_secs(5),
            });
        }
        row
    });
    row.out(None)
}

/// An open export that has not moved for this long is taken for abandoned (a build reports
/// progress every few seconds while it runs).
const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// Fails the campaign's open export if it has gone stale, so it does not block new ones.
async fn fail_stale(state: &AppState, campaign_id: &str, now: DateTime<Utc>) -> Result<()> {
    let cutoff = now - STALE_AFTER;
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE exports SET status = 'failed', error = $4, finished_at = $3, updated_at = $3
                     WHERE campaign_id = $1 AND status IN ('queued', 'running') AND updated_at < $2")
            .bind(campaign_id).bind(cutoff).bind(now)
            .bind(format!("abandoned: no progress for {} minutes", STALE_AFTER.num_minutes()))
            .execute(pool).await?;
    });
    Ok(())
}

async fn load(state: &AppState, campaign_id: &str, id: &str) -> Result<ExportRow> {
    let row: Option<ExportRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM exports WHERE id = $1 AND campaign_id = $2"))
            .bind(id).bind(campaign_id).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("export"))
}

/// The archive's download name: the campaign's name, made safe, and the export's id.
fn download_name(campaign_name: &str, id: &str) -> String {
    let base: String = campaign_name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let base: String = base.chars().take(80).collect();
    if base.is_empty() {
        format!("{id}.zip")
    } else {
        format!("{base}-{id}.zip")
    }
}

/// `GET /api/campaigns/{id}/exports/{export_id}`: the status, with a link once ready.
pub async fn get(
    state: &AppState,
    who: &Principal,
    campaign: &CampaignId,
    id: &ExportId,
) -> Result<ExportOut> {
    // `load_campaign` answers 404 to whoever may not read the campaign's client.
    let c = crate::campaigns::load_campaign(state, who, campaign).await?;
    let row = load(state, &c.id, id.as_str()).await?;
    let download = match (row.status.as_str(), row.storage_key.as_deref()) {
        ("ready", Some(key)) => Some(
            crate::storage::delivery::download_link(
                state,
                key,
                "application/zip",
                Some(&download_name(&c.name, &row.id)),
            )
            .await?,
        ),
        _ => None,
    };
    row.out(download)
}

/// `GET /api/campaigns/{id}/exports`: the campaign's newest exports (no links: ask for one).
pub async fn list(
    state: &AppState,
    who: &Principal,
    campaign: &CampaignId,
) -> Result<Vec<ExportOut>> {
    let c = crate::campaigns::load_campaign(state, who, campaign).await?;
    let rows: Vec<ExportRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM exports WHERE campaign_id = $1 ORDER BY id DESC LIMIT $2"))
            .bind(&c.id).bind(LIST_LIMIT).fetch_all(pool).await?
    });
    rows.into_iter().map(|r| r.out(None)).collect()
}

async fn set_progress(state: &AppState, id: &str, p: i32) {
    let now = state.clock.now();
    let r = with_db!(&state.db, pool => {
        sqlx::query("UPDATE exports SET progress = $2, updated_at = $3 WHERE id = $1 AND status = 'running'")
            .bind(id).bind(p).bind(now).execute(pool).await.map(|_| ())
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "recording an export's progress");
    }
}

/// Builds one export: packages, stores, records and announces it.
pub async fn build(state: &AppState, id: &str, ctx: Option<&JobContext>) -> Result<()> {
    let row: Option<ExportRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM exports WHERE id = $1")).bind(id).fetch_optional(pool).await?
    });
    let Some(row) = row else {
        return Ok(()); // the campaign went, and its exports with it
    };
    if !matches!(row.status.as_str(), "queued" | "running") {
        return Ok(()); // done already (a job delivered twice)
    }
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE exports SET status = 'running', started_at = $2, progress = 1, updated_at = $2 WHERE id = $1")
            .bind(id).bind(now).execute(pool).await?;
    });
    let campaign: Option<(String, String)> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, name FROM campaigns WHERE id = $1").bind(&row.campaign_id).fetch_optional(pool).await?
    });
    let Some((campaign_id, campaign_name)) = campaign else {
        return Ok(());
    };
    let renders = approved(state, &campaign_id, state.config.exports.max_renders).await?;
    let key = archive_key(&row.client_id, id);
    let header = archive::Header {
        export_id: id.to_owned(),
        campaign_id,
        campaign_name,
        client_id: row.client_id.clone(),
        created_at: now,
    };
    let state2 = state.clone();
    let id2 = id.to_owned();
    let report = move |percent: i32| {
        let (state, id) = (state2.clone(), id2.clone());
        async move { set_progress(&state, &id, percent).await }
    };
    let built = archive::build(
        state.blobs.as_ref(),
        &key,
        &header,
        &renders,
        state.config.exports.max_bytes,
        &report,
        ctx,
    )
    .await;
    let now = state.clock.now();
    match built {
        Ok(done) => {
            let sha = hex::encode(done.written.sha256);
            let size = i64::try_from(done.written.size).unwrap_or(i64::MAX);
            let files = i32::try_from(done.files).unwrap_or(i32::MAX);
            with_db!(&state.db, pool => {
                let mut tx = pool.begin_write().await?;
                sqlx::query("UPDATE exports SET status = 'ready', progress = 100, renders = $2, storage_key = $3, size_bytes = $4, sha256 = $5, error = NULL, finished_at = $6, updated_at = $6 WHERE id = $1")
                    .bind(id).bind(files).bind(&key).bind(size).bind(&sha).bind(now).execute(&mut *tx).await?;
                emit_event!(&mut *tx, now, types::EXPORT_READY, id, json!({
                    "export_id": id, "campaign_id": row.campaign_id, "client_id": row.client_id,
                    "renders": files, "size_bytes": size, "sha256": sha,
                }))?;
                tx.commit().await?;
            });
            Ok(())
        }
        Err(e) => {
            let text = e.to_string();
            tracing::warn!(export = id, error = %text, "export failed");
            with_db!(&state.db, pool => {
                sqlx::query("UPDATE exports SET status = 'failed', error = $2, finished_at = $3, updated_at = $3 WHERE id = $1")
                    .bind(id).bind(&text).bind(now).execute(pool).await?;
            });
            Ok(())
        }
    }
}

/// The `export.build` job.
struct Build {
    state: AppState,
}

#[async_trait]
impl JobHandler for Build {
    async fn handle(&self, job: &Job, ctx: &JobContext) -> std::result::Result<Value, JobFailure> {
        let id = job
            .payload
            .get("export_id")
            .and_then(Value::as_str)
            .ok_or_else(|| JobFailure::permanent("export.payload", "the job has no `export_id`"))?;
        // A failure of the archive is recorded on the export; what is left is the database.
        build(&self.state, id, Some(ctx))
            .await
            .map_err(|e| JobFailure::retryable("export.build", e.to_string()))?;
        Ok(json!({"export_id": id}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_keep_words_and_drop_the_rest() {
        assert_eq!(
            download_name("Spring Sale / 2027", "exp_1"),
            "Spring-Sale-2027-exp_1.zip"
        );
        assert_eq!(download_name("../..", "exp_1"), "exp_1.zip");
        assert_eq!(download_name("Été", "exp_1"), "Été-exp_1.zip");
    }
}
