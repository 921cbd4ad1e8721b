//! Approval workflows: a member asks a client to approve an execution's output; the client gets a
//! single-purpose signed link (HMAC under `JWT_SECRET`, bound to the purpose "approval", the
//! approval's id and its expiry) and approves or rejects without an account. A decision is final:
//! the link works once.

pub mod routes;

use crate::audit::{Actor, Entry};
use crate::auth::{signing, Principal};
use crate::campaigns::load_execution;
use crate::clients::{ensure_can_read, ensure_can_write};
use crate::db::BeginWrite as _;
use crate::domain::{self, Email};
use crate::email::secrets::{LinkSecret, MARKER};
use crate::email::templates::{self, Message};
use crate::email::NewEmail;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{ApprovalId, ClientId, ExecutionId};
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use crate::{emit_event, record_on, with_db};
use airwave_api::{
    ApprovalCreatedOut, ApprovalDecisionIn, ApprovalIn, ApprovalOut, ApprovalStatus,
    ApprovalViewOut, Decision, Page,
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

const PURPOSE: &str = "approval";
const DEFAULT_HOURS: u32 = 168;

/// The token of an approval's link: its id and expiry, signed (the e-mail feature makes it again
/// at send time from the same two).
pub fn link_token(key: &secrecy::SecretSlice<u8>, id: &str, exp: i64) -> String {
    signing::sign_link(
        key,
        PURPOSE,
        &LinkClaims {
            aid: id.to_owned(),
            exp,
        },
    )
}

#[derive(Serialize, Deserialize)]
struct LinkClaims {
    aid: String,
    exp: i64,
}

#[derive(sqlx::FromRow)]
struct ApprovalRow {
    id: String,
    execution_id: String,
    client_id: String,
    status: String,
    reviewer_email: Option<String>,
    note: Option<String>,
    comment: Option<String>,
    expires_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl ApprovalRow {
    fn into_out(self) -> Result<ApprovalOut> {
        Ok(ApprovalOut {
            id: self.id,
            execution_id: self.execution_id,
            client_id: self.client_id,
            status: self
                .status
                .parse()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            reviewer_email: self.reviewer_email,
            note: self.note,
            comment: self.comment,
            expires_at: self.expires_at,
            decided_at: self.decided_at,
            created_at: self.created_at,
        })
    }
}

const COLUMNS: &str = "id, execution_id, client_id, status, reviewer_email, note, comment, expires_at, decided_at, created_at";

/// Opens an approval for an execution and returns its link (shown once). When a reviewer address
/// is given, the link is also mailed to it.
pub async fn request(
    state: &AppState,
    who: &Principal,
    execution: &ExecutionId,
    input: &ApprovalIn,
    actor: &Actor,
) -> Result<ApprovalCreatedOut> {
    let reviewer = input
        .reviewer_email
        .as_deref()
        .map(Email::parse)
        .transpose()?;
    let note = domain::optional_text("note", input.note.as_deref(), 2000)?;
    let hours = input.expires_in_hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=720).contains(&hours) {
        return Err(Error::invalid(
            "validation_failed",
            "`expires_in_hours` must be between 1 and 720",
        ));
    }
    let exe = load_execution(state, who, execution).await?;
    ensure_can_write(state, who, &exe.client_id).await?;
    let now = state.clock.now();
    let id = ApprovalId::new(now);
    let expires_at = now + Duration::hours(i64::from(hours));
    let token = link_token(&state.signing_key, id.as_str(), expires_at.timestamp());
    let url = state.config.link("/approve", Some(&token))?;
    let mail = match &reviewer {
        None => None,
        Some(r) => {
            let (client_name, campaign_name, matrix_name): (String, String, String) = with_db!(&state.db, pool => {
                sqlx::query_as("SELECT c.name, ca.name, m.name FROM executions e JOIN clients c ON c.id = e.client_id
                                JOIN campaigns ca ON ca.id = e.campaign_id JOIN matrices m ON m.id = e.matrix_id WHERE e.id = $1")
                    .bind(execution.as_str()).fetch_one(pool).await?
            });
            let link = |decision: &str| -> Result<String> {
                let mut u = state.config.link("/approve", Some(MARKER))?;
                u.query_pairs_mut().append_pair("decision", decision);
                Ok(u.to_string())
            };
            Some(
                NewEmail::new(
                    &state.config.email,
                    now,
                    r,
                    Message::ClientApproval(templates::ClientApproval {
                        client_name,
                        campaign_name,
                        execution_name: format!("{matrix_name} ({execution})"),
                        requested_by: who.email.clone(),
                        note: note.clone(),
                        approve_url: link("approve")?,
                        reject_url: link("reject")?,
                        expires_at: chrono::SubsecRound::trunc_subsecs(expires_at, 0),
                    }),
                    Some(LinkSecret::Approval {
                        id: id.to_string(),
                        exp: expires_at.timestamp(),
                    }),
                )?
                .caused_by(Some(who.user_id.as_str()), Some(&exe.client_id))
                .correlation(Some(id.as_str())),
            )
        }
    };
    let row: ApprovalRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: ApprovalRow = sqlx::query_as(&format!(
            "INSERT INTO approval_workflows (id, execution_id, client_id, status, reviewer_email, note, requested_by, expires_at, created_at, updated_at)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $8) RETURNING {COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(execution.as_str())
        .bind(&exe.client_id)
        .bind(reviewer.as_ref().map(Email::as_str))
        .bind(&note)
        .bind(who.user_id.as_str())
        .bind(expires_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        emit_event!(&mut *tx, now, types::APPROVAL_REQUESTED, id.as_str(), json!({"approval_id": id, "execution_id": execution, "client_id": exe.client_id}))?;
        if let Some(mail) = &mail {
            crate::record_email_on!(&mut *tx, mail)?;
        }
        record_on!(&mut *tx, now, actor, Entry { action: "approval.request", target_type: Some("approval"), target_id: Some(id.as_str()), detail: json!({"execution_id": execution}) })?;
        tx.commit().await?;
        row
    });
    Ok(ApprovalCreatedOut {
        approval: row.into_out()?,
        token,
        url: url.to_string(),
    })
}

async fn fetch(state: &AppState, id: &str) -> Result<Option<ApprovalRow>> {
    Ok(with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM approval_workflows WHERE id = $1")).bind(id).fetch_optional(pool).await?
    }))
}

pub async fn get(state: &AppState, who: &Principal, id: &ApprovalId) -> Result<ApprovalOut> {
    let row = fetch(state, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("approval"))?;
    ensure_can_read(state, who, &row.client_id)
        .await
        .map_err(|_| Error::not_found("approval"))?;
    row.into_out()
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    pub client_id: Option<String>,
    pub status: Option<ApprovalStatus>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub async fn list(
    state: &AppState,
    who: &Principal,
    q: &ApprovalQuery,
) -> Result<Page<ApprovalOut>> {
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, cursor) = (paging.limit()?, paging.cursor::<ApprovalId>()?);
    let client = q
        .client_id
        .clone()
        .map(ClientId::try_from)
        .transpose()
        .map_err(|e| Error::invalid("invalid_query", format!("`client_id`: {e}")))?;
    let member = (!who.is_staff()).then(|| who.user_id.to_string());
    let rows: Vec<ApprovalRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM approval_workflows w
             WHERE ($1 IS NULL OR w.client_id = $1) AND ($2 IS NULL OR w.status = $2) AND ($3 IS NULL OR w.id < $3)
               AND ($4 IS NULL OR w.client_id IN (SELECT client_id FROM client_memberships WHERE user_id = $4))
             ORDER BY w.id DESC LIMIT $5"
        ))
        .bind(client.as_ref().map(ClientId::as_str))
        .bind(q.status.map(ApprovalStatus::as_str))
        .bind(cursor.as_ref().map(ApprovalId::as_str))
        .bind(member)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    let items = rows
        .into_iter()
        .map(ApprovalRow::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(page(items, limit, |a| a.id.clone()))
}

/// Checks a link and returns its approval. Expired links answer 410, forged ones 404.
async fn from_link(state: &AppState, token: &str) -> Result<ApprovalRow> {
    let claims: LinkClaims = signing::verify_link(&state.signing_key, PURPOSE, token)
        .ok_or_else(|| Error::NotFound("this approval link is not valid".into()))?;
    if claims.exp <= state.clock.now().timestamp() {
        return Err(Error::Gone {
            code: "link_expired",
            detail: "this approval link has expired; ask for a new one".into(),
        });
    }
    fetch(state, &claims.aid)
        .await?
        .ok_or_else(|| Error::NotFound("this approval link is not valid".into()))
}

/// What the holder of a link sees: the approval, the client, the campaign and the execution.
pub async fn view(state: &AppState, token: &str) -> Result<ApprovalViewOut> {
    let row = from_link(state, token).await?;
    let (client_name, campaign_name): (String, String) = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT c.name, cp.name FROM executions e JOIN clients c ON c.id = e.client_id JOIN campaigns cp ON cp.id = e.campaign_id WHERE e.id = $1")
            .bind(&row.execution_id)
            .fetch_one(pool)
            .await?
    });
    let execution: crate::campaigns::ExecutionRow = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {} FROM executions WHERE id = $1", crate::campaigns::EXECUTION_COLUMNS))
            .bind(&row.execution_id)
            .fetch_one(pool)
            .await?
    });
    Ok(ApprovalViewOut {
        approval: row.into_out()?,
        client_name,
        campaign_name,
        execution: execution.into_out()?,
    })
}

/// Records the client's decision. Only a pending approval can be decided, once.
pub async fn decide(
    state: &AppState,
    input: &ApprovalDecisionIn,
    ip: Option<String>,
) -> Result<ApprovalOut> {
    let comment = domain::optional_text("comment", input.comment.as_deref(), 5000)?;
    let row = from_link(state, &input.token).await?;
    let status = match input.decision {
        Decision::Approve => ApprovalStatus::Approved,
        Decision::Reject => ApprovalStatus::Rejected,
    };
    let now = state.clock.now();
    let actor = Actor {
        user_id: None,
        token_id: None,
        ip,
    };
    let updated: ApprovalRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let updated: Option<ApprovalRow> = sqlx::query_as(&format!(
            "UPDATE approval_workflows SET status = $2, comment = $3, decided_at = $4, updated_at = $4
             WHERE id = $1 AND status = 'pending' RETURNING {COLUMNS}"
        ))
        .bind(&row.id)
        .bind(status.as_str())
        .bind(&comment)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(updated) = updated else {
            return Err(Error::conflict("already_decided", format!("this approval was already {}", row.status)));
        };
        emit_event!(&mut *tx, now, types::APPROVAL_RECEIVED, row.id.as_str(), json!({
            "approval_id": row.id, "execution_id": row.execution_id, "client_id": row.client_id, "decision": status.as_str()
        }))?;
        record_on!(&mut *tx, now, &actor, Entry { action: "approval.decide", target_type: Some("approval"), target_id: Some(&row.id), detail: json!({"decision": status.as_str()}) })?;
        tx.commit().await?;
        updated
    });
    updated.into_out()
}
