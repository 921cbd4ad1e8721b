//! Campaigns → matrices (a campaign's render templates) → executions (render requests). An
//! execution starts `queued`; the job queue issue moves it through rendering to completed/failed.

pub mod routes;

use crate::auth::Principal;
use crate::clients::{ensure_can_read, ensure_can_write};
use crate::db::json_object;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{CampaignId, ClientId, ExecutionId, MatrixId};
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use crate::{domain, emit_event, with_db};
use airwave_api::{
    CampaignIn, CampaignOut, ExecutionIn, ExecutionOut, ExecutionStatus, MatrixIn, MatrixOut, Page,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use sqlx::types::Json;

const MAX_TEMPLATE_BYTES: usize = 256 * 1024;
const MAX_PARAMS_BYTES: usize = 64 * 1024;

fn bad_query(field: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("invalid_query", format!("`{field}`: {e}"))
}

// --- campaigns -------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(crate) struct CampaignRow {
    pub id: String,
    pub client_id: String,
    pub name: String,
    description: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<CampaignRow> for CampaignOut {
    fn from(r: CampaignRow) -> Self {
        CampaignOut {
            id: r.id,
            client_id: r.client_id,
            name: r.name,
            description: r.description,
            created_at: r.created_at,
        }
    }
}

const CAMPAIGN_COLUMNS: &str = "id, client_id, name, description, created_at";

pub async fn create_campaign(
    state: &AppState,
    who: &Principal,
    input: &CampaignIn,
) -> Result<CampaignOut> {
    let client = ClientId::try_from(input.client_id.clone())
        .map_err(|e| Error::invalid("validation_failed", format!("`client_id`: {e}")))?;
    let name = domain::name("name", &input.name, 200)?;
    let description = domain::optional_text("description", input.description.as_deref(), 5000)?;
    ensure_can_write(state, who, client.as_str()).await?;
    let now = state.clock.now();
    let id = CampaignId::new(now);
    let row: CampaignRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: CampaignRow = sqlx::query_as(&format!(
            "INSERT INTO campaigns (id, client_id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING {CAMPAIGN_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(client.as_str())
        .bind(&name)
        .bind(&description)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::CAMPAIGN_CREATED, id.as_str(), json!({"campaign_id": id, "client_id": client}))?;
        tx.commit().await?;
        row
    });
    Ok(row.into())
}

pub(crate) async fn load_campaign(
    state: &AppState,
    who: &Principal,
    id: &CampaignId,
) -> Result<CampaignRow> {
    let row: Option<CampaignRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    let row = row.ok_or_else(|| Error::not_found("campaign"))?;
    ensure_can_read(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("campaign"))?;
    Ok(row)
}

pub async fn get_campaign(
    state: &AppState,
    who: &Principal,
    id: &CampaignId,
) -> Result<CampaignOut> {
    Ok(load_campaign(state, who, id).await?.into())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CampaignQuery {
    pub client_id: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list_campaigns(
    state: &AppState,
    who: &Principal,
    q: &CampaignQuery,
) -> Result<Page<CampaignOut>> {
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, cursor) = (paging.limit()?, paging.cursor::<CampaignId>()?);
    let client = q
        .client_id
        .clone()
        .map(ClientId::try_from)
        .transpose()
        .map_err(|e| bad_query("client_id", e))?;
    let member = (!who.is_staff()).then(|| who.user_id.to_string());
    let rows: Vec<CampaignRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns c
             WHERE ($1 IS NULL OR c.client_id = $1) AND ($2 IS NULL OR c.id < $2)
               AND ($3 IS NULL OR c.client_id IN (SELECT client_id FROM client_memberships WHERE user_id = $3))
             ORDER BY c.id DESC LIMIT $4"
        ))
        .bind(client.as_ref().map(ClientId::as_str))
        .bind(cursor.as_ref().map(CampaignId::as_str))
        .bind(member)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    Ok(page(
        rows.into_iter().map(CampaignOut::from).collect(),
        limit,
        |c| c.id.clone(),
    ))
}

// --- matrices --------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct MatrixRow {
    id: String,
    campaign_id: String,
    client_id: String,
    name: String,
    template: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl From<MatrixRow> for MatrixOut {
    fn from(r: MatrixRow) -> Self {
        MatrixOut {
            id: r.id,
            campaign_id: r.campaign_id,
            client_id: r.client_id,
            name: r.name,
            template: json_object(r.template),
            created_at: r.created_at,
        }
    }
}

const MATRIX_COLUMNS: &str = "id, campaign_id, client_id, name, template, created_at";

pub async fn create_matrix(
    state: &AppState,
    who: &Principal,
    campaign: &CampaignId,
    input: &MatrixIn,
) -> Result<MatrixOut> {
    let name = domain::name("name", &input.name, 200)?;
    domain::json_object("template", &input.template, MAX_TEMPLATE_BYTES)?;
    let c = load_campaign(state, who, campaign).await?;
    ensure_can_write(state, who, &c.client_id).await?;
    let now = state.clock.now();
    let id = MatrixId::new(now);
    let row: MatrixRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: MatrixRow = sqlx::query_as(&format!(
            "INSERT INTO matrices (id, campaign_id, client_id, name, template, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {MATRIX_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(&c.id)
        .bind(&c.client_id)
        .bind(&name)
        .bind(Json(serde_json::Value::Object(input.template.clone())))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::MATRIX_CREATED, id.as_str(), json!({"matrix_id": id, "campaign_id": c.id, "client_id": c.client_id}))?;
        tx.commit().await?;
        row
    });
    Ok(row.into())
}

async fn load_matrix(state: &AppState, who: &Principal, id: &MatrixId) -> Result<MatrixRow> {
    let row: Option<MatrixRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {MATRIX_COLUMNS} FROM matrices WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    let row = row.ok_or_else(|| Error::not_found("matrix"))?;
    ensure_can_read(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("matrix"))?;
    Ok(row)
}

pub async fn get_matrix(state: &AppState, who: &Principal, id: &MatrixId) -> Result<MatrixOut> {
    Ok(load_matrix(state, who, id).await?.into())
}

pub async fn list_matrices(
    state: &AppState,
    who: &Principal,
    campaign: &CampaignId,
) -> Result<Vec<MatrixOut>> {
    load_campaign(state, who, campaign).await?;
    let rows: Vec<MatrixRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {MATRIX_COLUMNS} FROM matrices WHERE campaign_id = $1 ORDER BY id DESC LIMIT 500"))
            .bind(campaign.as_str())
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().map(MatrixOut::from).collect())
}

// --- executions ------------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
pub(crate) struct ExecutionRow {
    id: String,
    matrix_id: String,
    campaign_id: String,
    pub(crate) client_id: String,
    status: String,
    progress: i32,
    params: Json<serde_json::Value>,
    output_key: Option<String>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ExecutionRow {
    pub(crate) fn into_out(self) -> Result<ExecutionOut> {
        Ok(ExecutionOut {
            id: self.id,
            matrix_id: self.matrix_id,
            campaign_id: self.campaign_id,
            client_id: self.client_id,
            status: self
                .status
                .parse()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            progress: self.progress,
            params: json_object(self.params),
            output_key: self.output_key,
            error: self.error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(crate) const EXECUTION_COLUMNS: &str =
    "id, matrix_id, campaign_id, client_id, status, progress, params, output_key, error, created_at, updated_at";

pub async fn create_execution(
    state: &AppState,
    who: &Principal,
    matrix: &MatrixId,
    input: &ExecutionIn,
) -> Result<ExecutionOut> {
    domain::json_object("params", &input.params, MAX_PARAMS_BYTES)?;
    // Text that would become an invalid SVG (and so a render that fails for good) is refused now.
    for (name, value) in &input.params {
        if let serde_json::Value::String(s) = value {
            if let Some(c) = s
                .chars()
                .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
            {
                return Err(Error::invalid(
                    "invalid_param",
                    format!(
                        "param `{name}` has a control character (U+{:04X})",
                        u32::from(c)
                    ),
                ));
            }
        }
    }
    let m = load_matrix(state, who, matrix).await?;
    ensure_can_write(state, who, &m.client_id).await?;
    let now = state.clock.now();
    let id = ExecutionId::new(now);
    let row: ExecutionRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: ExecutionRow = sqlx::query_as(&format!(
            "INSERT INTO executions (id, matrix_id, campaign_id, client_id, status, progress, params, created_at, updated_at, created_by)
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $6, $7) RETURNING {EXECUTION_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(&m.id)
        .bind(&m.campaign_id)
        .bind(&m.client_id)
        .bind(Json(serde_json::Value::Object(input.params.clone())))
        .bind(now)
        .bind(who.user_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::EXECUTION_CREATED, id.as_str(), json!({"execution_id": id, "matrix_id": m.id, "client_id": m.client_id}))?;
        tx.commit().await?;
        row
    });
    row.into_out()
}

pub(crate) async fn load_execution(
    state: &AppState,
    who: &Principal,
    id: &ExecutionId,
) -> Result<ExecutionRow> {
    let row: Option<ExecutionRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    let row = row.ok_or_else(|| Error::not_found("execution"))?;
    ensure_can_read(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("execution"))?;
    Ok(row)
}

pub async fn get_execution(
    state: &AppState,
    who: &Principal,
    id: &ExecutionId,
) -> Result<ExecutionOut> {
    load_execution(state, who, id).await?.into_out()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExecutionQuery {
    pub client_id: Option<String>,
    pub matrix_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list_executions(
    state: &AppState,
    who: &Principal,
    q: &ExecutionQuery,
) -> Result<Page<ExecutionOut>> {
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, cursor) = (paging.limit()?, paging.cursor::<ExecutionId>()?);
    let client = q
        .client_id
        .clone()
        .map(ClientId::try_from)
        .transpose()
        .map_err(|e| bad_query("client_id", e))?;
    let matrix = q
        .matrix_id
        .clone()
        .map(MatrixId::try_from)
        .transpose()
        .map_err(|e| bad_query("matrix_id", e))?;
    let member = (!who.is_staff()).then(|| who.user_id.to_string());
    let rows: Vec<ExecutionRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions e
             WHERE ($1 IS NULL OR e.client_id = $1) AND ($2 IS NULL OR e.matrix_id = $2) AND ($3 IS NULL OR e.status = $3)
               AND ($4 IS NULL OR e.id < $4)
               AND ($5 IS NULL OR e.client_id IN (SELECT client_id FROM client_memberships WHERE user_id = $5))
             ORDER BY e.id DESC LIMIT $6"
        ))
        .bind(client.as_ref().map(ClientId::as_str))
        .bind(matrix.as_ref().map(MatrixId::as_str))
        .bind(q.status.map(ExecutionStatus::as_str))
        .bind(cursor.as_ref().map(ExecutionId::as_str))
        .bind(member)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    let items = rows
        .into_iter()
        .map(ExecutionRow::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(page(items, limit, |e| e.id.clone()))
}
