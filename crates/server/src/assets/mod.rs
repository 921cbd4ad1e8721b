//! Assets: create, read, update, delete and search their metadata; upload their files
//! (`upload.rs` in one request, `tus.rs` resumable, both through `sniff.rs`), hand out signed links
//! to them, and clean up what uploads leave behind (`cleanup.rs`). The server owns every storage
//! key (`clients/<client>/assets/<asset>/<upl_…>`): a client never names a blob.
//!
//! Search is where the dialects part: PostgreSQL matches the plan's GIN expression
//! (`to_tsvector('english', name || ' ' || metadata->>'description')`) with `plainto_tsquery`, so
//! the index is used; SQLite matches the FTS5 table `assets_fts` that triggers keep in step. Both
//! stem English words and require every word of the query.

pub mod cleanup;
pub mod routes;
pub mod settings;
pub mod sniff;
pub mod tus;
pub mod upload;

use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::clients::{ensure_can_read, ensure_can_write};
use crate::db::BeginWrite as _;
use crate::db::{json_object, Db};
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{AssetId, ClientId, UploadId};
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use crate::{domain, emit_event, record_on, with_db};
use airwave_api::{AssetIn, AssetOut, AssetPatch, AssetType, Page};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;

const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Assets' part of the platform: routes (metadata, uploads, tus, links), the uploads settings,
/// and the cleanup job with its schedule.
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "assets"
    }

    fn routes(&self) -> crate::feature::Routes {
        routes::routes()
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn cleanup_jobs(
        &self,
        state: &AppState,
    ) -> Vec<(
        &'static str,
        std::sync::Arc<dyn crate::queue::worker::JobHandler>,
    )> {
        let job: std::sync::Arc<dyn crate::queue::worker::JobHandler> =
            std::sync::Arc::new(cleanup::CleanupJob {
                state: state.clone(),
            });
        vec![(cleanup::KIND, job)]
    }

    fn tasks(&self, state: &AppState) -> Vec<crate::feature::Task> {
        let queue = state.queue.clone();
        vec![crate::feature::Task::new(
            "storage-cleanup-schedule",
            crate::feature::Runs::Workers,
            move |stop| {
                let queue = queue.clone();
                async move {
                    while !stop.is_cancelled() {
                        let policy = queue.policy(crate::queue::retention::QUEUE);
                        if let Err(e) = queue.enqueue(cleanup::job(&policy)).await {
                            tracing::warn!(error = %e, "scheduling the storage cleanup job failed");
                        }
                        tokio::select! {
                            () = stop.cancelled() => {}
                            () = tokio::time::sleep(cleanup::EVERY) => {}
                        }
                    }
                }
            },
        )]
    }
}

/// The permanent URL of a public file: `<base>cdn/<key>` (the key is `clients/<c>/assets/<a>/<upl_…>`,
/// a new one per upload, so what is cached under a URL never changes).
pub fn public_url(base: &url::Url, key: &str) -> String {
    let mut u = base.clone();
    u.set_path(&format!("/cdn/{key}"));
    u.set_query(None);
    u.to_string()
}

/// The type and name of the public file at `key` (none unless its asset is public and it is the
/// asset's current file).
pub(crate) async fn public_file(
    state: &AppState,
    key: &str,
) -> Result<Option<(String, Option<String>)>> {
    let row: Option<(Option<String>, Option<String>)> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT content_type, filename FROM assets WHERE storage_key = $1 AND public")
            .bind(key).fetch_optional(pool).await?
    });
    Ok(row.and_then(|(ct, name)| ct.map(|ct| (ct, name))))
}

/// A signed, expiring link to an asset's file (409 when it has none yet).
pub async fn download_url(
    state: &AppState,
    who: &Principal,
    id: &AssetId,
) -> Result<airwave_api::DownloadUrlOut> {
    let row = load(state, who, id).await?;
    let (Some(key), Some(ct)) = (row.storage_key.as_deref(), row.content_type.as_deref()) else {
        return Err(Error::conflict(
            "no_file",
            "this asset has no uploaded file yet",
        ));
    };
    crate::storage::delivery::download_link(state, key, ct, row.filename.as_deref()).await
}

#[derive(sqlx::FromRow)]
pub(crate) struct AssetRow {
    pub id: String,
    pub client_id: String,
    #[sqlx(rename = "type")]
    pub type_: String,
    name: String,
    metadata: Json<serde_json::Value>,
    pub storage_key: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    size: Option<i64>,
    checksum: Option<String>,
    pub public: bool,
    uploaded_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AssetRow {
    /// `base` is where public files are served (`Config::public_assets_base`).
    pub(crate) fn into_out(self, base: &url::Url) -> Result<AssetOut> {
        let public_url = match (self.public, self.storage_key.as_deref()) {
            (true, Some(key)) => Some(public_url(base, key)),
            _ => None,
        };
        Ok(AssetOut {
            public: self.public,
            public_url,
            id: self.id,
            client_id: self.client_id,
            type_: self
                .type_
                .parse()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            name: self.name,
            metadata: json_object(self.metadata),
            content_type: self.content_type,
            filename: self.filename,
            size: self.size,
            checksum: self.checksum,
            uploaded_at: self.uploaded_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "a.id, a.client_id, a.type, a.name, a.metadata, a.storage_key, a.content_type, a.filename, a.size, a.checksum, a.public, a.uploaded_at, a.created_at, a.updated_at";

pub async fn create(state: &AppState, who: &Principal, input: &AssetIn) -> Result<AssetOut> {
    let client = ClientId::try_from(input.client_id.clone())
        .map_err(|e| Error::invalid("validation_failed", format!("`client_id`: {e}")))?;
    let name = domain::name("name", &input.name, 300)?;
    let metadata = domain::json_object("metadata", &input.metadata, MAX_METADATA_BYTES)?;
    ensure_can_write(state, who, client.as_str()).await?;
    let now = state.clock.now();
    let id = AssetId::new(now);
    let row: AssetRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO assets (id, client_id, type, name, metadata, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(client.as_str())
        .bind(input.type_.as_str())
        .bind(&name)
        .bind(Json(serde_json::from_str::<serde_json::Value>(&metadata).map_err(|e| Error::Internal(e.into()))?))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::ASSET_CREATED, id.as_str(), json!({"asset_id": id, "client_id": client}))?;
        let row: AssetRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id.as_str()).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    });
    row.into_out(state.config.public_assets_base())
}

/// An asset, whoever asks (for work already authorised).
pub(crate) async fn load_any(state: &AppState, id: &str) -> Result<AssetRow> {
    let row: Option<AssetRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("asset"))
}

/// Loads an asset and checks the caller may read it; 404 otherwise.
pub(crate) async fn load(state: &AppState, who: &Principal, id: &AssetId) -> Result<AssetRow> {
    let row: Option<AssetRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    let row = row.ok_or_else(|| Error::not_found("asset"))?;
    ensure_can_read(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("asset"))?;
    Ok(row)
}

pub async fn get(state: &AppState, who: &Principal, id: &AssetId) -> Result<AssetOut> {
    load(state, who, id)
        .await?
        .into_out(state.config.public_assets_base())
}

pub async fn update(
    state: &AppState,
    who: &Principal,
    id: &AssetId,
    patch: &AssetPatch,
) -> Result<AssetOut> {
    let name = patch
        .name
        .as_deref()
        .map(|n| domain::name("name", n, 300))
        .transpose()?;
    let metadata = patch
        .metadata
        .as_ref()
        .map(|m| domain::json_object("metadata", m, MAX_METADATA_BYTES))
        .transpose()?;
    let current = load(state, who, id).await?;
    ensure_can_write(state, who, &current.client_id).await?;
    if let (Some(t), Some(ct)) = (patch.type_, current.content_type.as_deref()) {
        if sniff::known(ct).is_some_and(|k| k.asset_type != t) {
            return Err(Error::invalid(
                "validation_failed",
                format!(
                    "the asset's file is `{ct}`, which is not a {} file; upload one first",
                    t.as_str()
                ),
            ));
        }
    }
    let metadata = match metadata {
        Some(m) => Some(
            serde_json::from_str::<serde_json::Value>(&m).map_err(|e| Error::Internal(e.into()))?,
        ),
        None => None,
    };
    let now = state.clock.now();
    let row: AssetRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "UPDATE assets SET name = COALESCE($2, name), type = COALESCE($3, type), metadata = COALESCE($4, metadata), public = COALESCE($6, public), updated_at = $5 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(&name)
        .bind(patch.type_.map(AssetType::as_str))
        .bind(metadata.map(Json))
        .bind(now)
        .bind(patch.public)
        .execute(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::ASSET_UPDATED, id.as_str(), json!({"asset_id": id, "client_id": current.client_id}))?;
        let row: AssetRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id.as_str()).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    });
    row.into_out(state.config.public_assets_base())
}

pub async fn delete(state: &AppState, who: &Principal, id: &AssetId, actor: &Actor) -> Result<()> {
    let current = load(state, who, id).await?;
    ensure_can_write(state, who, &current.client_id).await?;
    let now = state.clock.now();
    let uploads: Vec<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT id FROM uploads WHERE asset_id = $1 AND status = 'open'").bind(id.as_str()).fetch_all(pool).await?
    });
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM assets WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        emit_event!(&mut *tx, now, types::ASSET_DELETED, id.as_str(), json!({"asset_id": id, "client_id": current.client_id, "storage_key": current.storage_key}))?;
        record_on!(&mut *tx, now, actor, Entry { action: "asset.delete", target_type: Some("asset"), target_id: Some(id.as_str()), detail: json!({"client_id": current.client_id}) })?;
        tx.commit().await?;
    });
    // The file goes with the row; unfinished uploads' parts go with theirs (the rows cascade;
    // anything left is the orphan sweep's).
    if let Some(key) = &current.storage_key {
        upload::remove_blob(state, key).await;
    }
    for u in &uploads {
        if let Ok(u) = UploadId::try_from(u.clone()) {
            cleanup::remove_prefix(state, &format!("{}{u}/", tus::PARTS_PREFIX)).await;
        }
    }
    Ok(())
}

/// `GET /api/assets` filters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AssetQuery {
    /// Only this client's assets.
    pub client_id: Option<String>,
    /// Only assets of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub type_: Option<AssetType>,
    /// Full-text search over the name and `metadata.description`; every word must match.
    pub q: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The words of a search, each quoted for FTS5 so none is read as query syntax.
fn fts5_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

pub async fn list(state: &AppState, who: &Principal, q: &AssetQuery) -> Result<Page<AssetOut>> {
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = paging.limit()?;
    let cursor: Option<AssetId> = paging.cursor()?;
    let client = q
        .client_id
        .clone()
        .map(|c| {
            ClientId::try_from(c)
                .map_err(|e| Error::invalid("invalid_query", format!("`client_id`: {e}")))
        })
        .transpose()?;
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 200) {
        return Err(Error::invalid(
            "invalid_query",
            "`q` must have at most 200 characters",
        ));
    }
    let postgres = matches!(state.db, Db::Postgres(_));
    let search = match search {
        None => None,
        Some(s) if postgres => Some(s.to_owned()),
        // Nothing searchable (only punctuation): nothing matches.
        Some(s) => match fts5_query(s) {
            Some(f) => Some(f),
            None => {
                return Ok(Page {
                    items: vec![],
                    next_cursor: None,
                })
            }
        },
    };
    let member = (!who.is_staff()).then(|| who.user_id.to_string());
    let rows: Vec<AssetRow> = with_db!(&state.db, pool => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {COLUMNS} FROM assets a WHERE 1 = 1"));
        if let Some(c) = &client {
            qb.push(" AND a.client_id = ").push_bind(c.as_str());
        }
        if let Some(t) = q.type_ {
            qb.push(" AND a.type = ").push_bind(t.as_str());
        }
        if let Some(m) = &member {
            qb.push(" AND a.client_id IN (SELECT client_id FROM client_memberships WHERE user_id = ").push_bind(m.clone()).push(")");
        }
        if let Some(c) = &cursor {
            qb.push(" AND a.id < ").push_bind(c.as_str());
        }
        if let Some(s) = &search {
            if postgres {
                qb.push(" AND to_tsvector('english', a.name || ' ' || COALESCE(a.metadata->>'description', '')) @@ plainto_tsquery('english', ")
                    .push_bind(s.clone())
                    .push(")");
            } else {
                qb.push(" AND a.rowid IN (SELECT rowid FROM assets_fts WHERE assets_fts MATCH ").push_bind(s.clone()).push(")");
            }
        }
        qb.push(" ORDER BY a.id DESC LIMIT ").push_bind(limit + 1);
        qb.build_query_as().fetch_all(pool).await?
    });
    let items = rows
        .into_iter()
        .map(|r| r.into_out(state.config.public_assets_base()))
        .collect::<Result<Vec<_>>>()?;
    Ok(page(items, limit, |a| a.id.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_words_are_quoted_so_fts_syntax_is_inert() {
        assert_eq!(
            fts5_query("summer sale").as_deref(),
            Some("\"summer\" \"sale\"")
        );
        assert_eq!(
            fts5_query("NEAR(a b) OR \"x").as_deref(),
            Some("\"NEAR\" \"a\" \"b\" \"OR\" \"x\"")
        );
        assert_eq!(fts5_query("*** --"), None);
    }
}
