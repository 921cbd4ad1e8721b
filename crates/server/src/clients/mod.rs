//! Clients (the agencies' customers) and which users belong to them, plus the access rule every
//! client-owned resource follows:
//! - reading: staff roles (admin, operator, support) see every client; a member sees the clients
//!   they belong to, and any other client is "not found" to them;
//! - writing: admins, and members of that client. Operators and support staff read only.

pub mod invites;
pub mod routes;

use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::db::BeginWrite as _;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{ClientId, UserId};
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use crate::{domain, emit_event, record_on, with_db};
use airwave_api::{ClientOut, MemberOut, Page, Role};
use chrono::{DateTime, Utc};
use serde_json::json;

/// Roles that may create and change client data.
pub const WRITERS: &[Role] = &[Role::Admin, Role::Member];

/// Fails unless `who` may read `client`'s data (404 when they may not know it exists).
pub async fn ensure_can_read(state: &AppState, who: &Principal, client: &str) -> Result<()> {
    let (exists, member) = membership(state, who, client).await?;
    if exists && (who.is_staff() || member) {
        Ok(())
    } else {
        Err(Error::not_found("client"))
    }
}

/// Fails unless `who` may change `client`'s data.
pub async fn ensure_can_write(state: &AppState, who: &Principal, client: &str) -> Result<()> {
    let (exists, member) = membership(state, who, client).await?;
    match (exists, who.role) {
        (true, Role::Admin) => Ok(()),
        (true, Role::Member) if member => Ok(()),
        (true, _) if who.is_staff() => Err(Error::forbidden()),
        _ => Err(Error::not_found("client")),
    }
}

/// (the client exists, `who` is a member of it)
async fn membership(state: &AppState, who: &Principal, client: &str) -> Result<(bool, bool)> {
    let row: Option<(Option<i32>,)> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT (SELECT 1 FROM client_memberships m WHERE m.client_id = c.id AND m.user_id = $2) FROM clients c WHERE c.id = $1",
        )
        .bind(client)
        .bind(who.user_id.as_str())
        .fetch_optional(pool)
        .await?
    });
    Ok(match row {
        None => (false, false),
        Some((m,)) => (true, m.is_some()),
    })
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<ClientRow> for ClientOut {
    fn from(r: ClientRow) -> Self {
        ClientOut {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
        }
    }
}

/// Creates a client; its creator becomes a member.
pub async fn create(
    state: &AppState,
    who: &Principal,
    name: &str,
    actor: &Actor,
) -> Result<ClientOut> {
    who.require(WRITERS)?;
    let name = domain::name("name", name, 200)?;
    let now = state.clock.now();
    let id = ClientId::new(now);
    let row: ClientRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: ClientRow = sqlx::query_as("INSERT INTO clients (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id, name, created_at")
            .bind(id.as_str())
            .bind(&name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO client_memberships (client_id, user_id, added_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(who.user_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        emit_event!(&mut *tx, now, types::CLIENT_CREATED, id.as_str(), json!({"client_id": id, "name": name}))?;
        record_on!(&mut *tx, now, actor, Entry { action: "client.create", target_type: Some("client"), target_id: Some(id.as_str()), detail: json!({}) })?;
        tx.commit().await?;
        row
    });
    Ok(row.into())
}

pub async fn list(state: &AppState, who: &Principal, q: &PageQuery) -> Result<Page<ClientOut>> {
    let limit = q.limit()?;
    let cursor: Option<ClientId> = q.cursor()?;
    let member_filter = (!who.is_staff()).then(|| who.user_id.as_str());
    let rows: Vec<ClientRow> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT id, name, created_at FROM clients c
             WHERE ($1 IS NULL OR c.id < $1)
               AND ($2 IS NULL OR EXISTS (SELECT 1 FROM client_memberships m WHERE m.client_id = c.id AND m.user_id = $2))
             ORDER BY c.id DESC LIMIT $3",
        )
        .bind(cursor.as_ref().map(ClientId::as_str))
        .bind(member_filter)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    Ok(page(
        rows.into_iter().map(ClientOut::from).collect(),
        limit,
        |c| c.id.clone(),
    ))
}

pub async fn get(state: &AppState, who: &Principal, id: &ClientId) -> Result<ClientOut> {
    ensure_can_read(state, who, id.as_str()).await?;
    let row: ClientRow = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, name, created_at FROM clients WHERE id = $1").bind(id.as_str()).fetch_one(pool).await?
    });
    Ok(row.into())
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: String,
    email: String,
    name: String,
    added_at: DateTime<Utc>,
}

impl From<MemberRow> for MemberOut {
    fn from(r: MemberRow) -> Self {
        MemberOut {
            user_id: r.user_id,
            email: r.email,
            name: r.name,
            added_at: r.added_at,
        }
    }
}

const MEMBER_SELECT: &str =
    "SELECT u.id AS user_id, u.email, u.name, m.added_at FROM client_memberships m JOIN users u ON u.id = m.user_id";

pub async fn list_members(
    state: &AppState,
    who: &Principal,
    client: &ClientId,
) -> Result<Vec<MemberOut>> {
    ensure_can_read(state, who, client.as_str()).await?;
    let rows: Vec<MemberRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("{MEMBER_SELECT} WHERE m.client_id = $1 ORDER BY m.added_at LIMIT 1000"))
            .bind(client.as_str())
            .fetch_all(pool)
            .await?
    });
    Ok(rows.into_iter().map(MemberOut::from).collect())
}

pub async fn remove_member(
    state: &AppState,
    who: &Principal,
    client: &ClientId,
    user: &UserId,
    actor: &Actor,
) -> Result<()> {
    ensure_can_write(state, who, client.as_str()).await?;
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let done = sqlx::query("DELETE FROM client_memberships WHERE client_id = $1 AND user_id = $2")
            .bind(client.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("member"));
        }
        record_on!(&mut *tx, now, actor, Entry { action: "client.member_remove", target_type: Some("client"), target_id: Some(client.as_str()), detail: json!({"user_id": user}) })?;
        tx.commit().await?;
    });
    Ok(())
}
