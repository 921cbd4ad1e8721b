//! Asset metadata: create, read, update, delete and search. The bytes themselves go through the
//! storage seam (its own issue); here an asset records where they are (`storage_key`), their size
//! and checksum.
//!
//! Search is where the dialects part: PostgreSQL matches the plan's GIN expression
//! (`to_tsvector('english', name || ' ' || metadata->>'description')`) with `plainto_tsquery`, so
//! the index is used; SQLite matches the FTS5 table `assets_fts` that triggers keep in step. Both
//! stem English words and require every word of the query.

pub mod routes;

use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::clients::{ensure_can_read, ensure_can_write};
use crate::db::BeginWrite as _;
use crate::db::{json_object, Db};
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{AssetId, ClientId};
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use crate::{domain, emit_event, record_on, with_db};
use airwave_api::{AssetIn, AssetOut, AssetPatch, AssetType, Page};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;

const MAX_METADATA_BYTES: usize = 64 * 1024;

#[derive(sqlx::FromRow)]
struct AssetRow {
    id: String,
    client_id: String,
    #[sqlx(rename = "type")]
    type_: String,
    name: String,
    metadata: Json<serde_json::Value>,
    storage_key: Option<String>,
    size: Option<i64>,
    checksum: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl AssetRow {
    fn into_out(self) -> Result<AssetOut> {
        Ok(AssetOut {
            id: self.id,
            client_id: self.client_id,
            type_: self
                .type_
                .parse()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            name: self.name,
            metadata: json_object(self.metadata),
            storage_key: self.storage_key,
            size: self.size,
            checksum: self.checksum,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// The largest `size` an asset may declare (1 TiB).
const MAX_SIZE: i64 = 1 << 40;

const COLUMNS: &str = "a.id, a.client_id, a.type, a.name, a.metadata, a.storage_key, a.size, a.checksum, a.created_at, a.updated_at";

fn check_storage_key(key: Option<&str>) -> Result<Option<String>> {
    let Some(k) = key else { return Ok(None) };
    // The blob store's own rule, so an asset never names a file the store cannot hold.
    crate::storage::check_key(k).map_err(|_| {
        Error::invalid(
            "validation_failed",
            "`storage_key` must be a relative path of 1 to 1024 characters from [A-Za-z0-9-_./], without `..` or empty segments",
        )
    })?;
    Ok(Some(k.to_owned()))
}

fn check_checksum(sum: Option<&str>) -> Result<Option<String>> {
    let Some(s) = sum else { return Ok(None) };
    match s.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(Some(s.to_owned()))
        }
        _ => Err(Error::invalid(
            "validation_failed",
            "`checksum` must be `sha256:` followed by 64 lower-case hex digits",
        )),
    }
}

pub async fn create(state: &AppState, who: &Principal, input: &AssetIn) -> Result<AssetOut> {
    let client = ClientId::try_from(input.client_id.clone())
        .map_err(|e| Error::invalid("validation_failed", format!("`client_id`: {e}")))?;
    let name = domain::name("name", &input.name, 300)?;
    let metadata = domain::json_object("metadata", &input.metadata, MAX_METADATA_BYTES)?;
    let storage_key = check_storage_key(input.storage_key.as_deref())?;
    let checksum = check_checksum(input.checksum.as_deref())?;
    if input.size.is_some_and(|s| !(0..=MAX_SIZE).contains(&s)) {
        return Err(Error::invalid(
            "validation_failed",
            format!("`size` must be between 0 and {MAX_SIZE} bytes"),
        ));
    }
    ensure_can_write(state, who, client.as_str()).await?;
    let now = state.clock.now();
    let id = AssetId::new(now);
    let row: AssetRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO assets (id, client_id, type, name, metadata, storage_key, size, checksum, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(id.as_str())
        .bind(client.as_str())
        .bind(input.type_.as_str())
        .bind(&name)
        .bind(Json(serde_json::from_str::<serde_json::Value>(&metadata).map_err(|e| Error::Internal(e.into()))?))
        .bind(&storage_key)
        .bind(input.size)
        .bind(&checksum)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::ASSET_CREATED, id.as_str(), json!({"asset_id": id, "client_id": client}))?;
        let row: AssetRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id.as_str()).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    });
    row.into_out()
}

/// Loads an asset and checks the caller may read it; 404 otherwise.
async fn load(state: &AppState, who: &Principal, id: &AssetId) -> Result<AssetRow> {
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
    load(state, who, id).await?.into_out()
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
            "UPDATE assets SET name = COALESCE($2, name), type = COALESCE($3, type), metadata = COALESCE($4, metadata), updated_at = $5 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(&name)
        .bind(patch.type_.map(AssetType::as_str))
        .bind(metadata.map(Json))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::ASSET_UPDATED, id.as_str(), json!({"asset_id": id, "client_id": current.client_id}))?;
        let row: AssetRow = sqlx::query_as(&format!("SELECT {COLUMNS} FROM assets a WHERE a.id = $1")).bind(id.as_str()).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    });
    row.into_out()
}

pub async fn delete(state: &AppState, who: &Principal, id: &AssetId, actor: &Actor) -> Result<()> {
    let current = load(state, who, id).await?;
    ensure_can_write(state, who, &current.client_id).await?;
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM assets WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        emit_event!(&mut *tx, now, types::ASSET_DELETED, id.as_str(), json!({"asset_id": id, "client_id": current.client_id, "storage_key": current.storage_key}))?;
        record_on!(&mut *tx, now, actor, Entry { action: "asset.delete", target_type: Some("asset"), target_id: Some(id.as_str()), detail: json!({"client_id": current.client_id}) })?;
        tx.commit().await?;
    });
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
        .map(AssetRow::into_out)
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

    #[test]
    fn storage_keys_cannot_escape() {
        assert!(check_storage_key(Some("clients/cli_1/logo.png")).is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "a/./b", "a\\b"] {
            assert!(check_storage_key(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn checksums_must_be_sha256_hex() {
        assert!(check_checksum(Some(&format!("sha256:{}", "a".repeat(64)))).is_ok());
        assert!(check_checksum(Some("md5:abc")).is_err());
        assert!(check_checksum(Some(&format!("sha256:{}", "A".repeat(64)))).is_err());
    }
}
