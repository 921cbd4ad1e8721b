//! Adding a member is an invitation to an e-mail address: the same answer and the same e-mail
//! whether or not the address has an account, so inviting reveals nothing about who has one. The
//! owner of the address (once they have an account) accepts with the link's token while logged
//! in as that address; only then does the membership exist. Only the token's hash is stored.

use super::{ensure_can_read, ensure_can_write, MemberRow, MEMBER_SELECT};
use crate::audit::{Actor, Entry};
use crate::auth::{signing, Principal};
use crate::db::BeginWrite as _;
use crate::domain::Email;
use crate::email::secrets::{LinkSecret, MARKER};
use crate::email::templates::{self, Message};
use crate::email::NewEmail;
use crate::error::{Error, Result};
use crate::ids::{ClientId, InviteId};
use crate::state::AppState;
use crate::{record_on, with_db};
use airwave_api::{InviteOut, MemberOut};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// Invitations live this long.
const INVITE_TTL_DAYS: i64 = 7;
/// Open invitations one client may have.
const OPEN_PER_CLIENT: i64 = 1000;

fn invalid() -> Error {
    Error::invalid(
        "invalid_token",
        "this invitation is invalid, used, revoked, expired or for another address",
    )
}

#[derive(sqlx::FromRow)]
struct InviteRow {
    id: String,
    client_id: String,
    email: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<InviteRow> for InviteOut {
    fn from(r: InviteRow) -> Self {
        InviteOut {
            id: r.id,
            client_id: r.client_id,
            email: r.email,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

/// Invites `email` to `client`; an earlier open invitation of the same address is replaced.
pub async fn invite(
    state: &AppState,
    who: &Principal,
    client: &ClientId,
    email: &str,
    actor: &Actor,
) -> Result<InviteOut> {
    ensure_can_write(state, who, client.as_str()).await?;
    let email = Email::parse(email)?;
    let now = state.clock.now();
    let id = InviteId::new(now);
    let secret = LinkSecret::derived("invite", id.as_str(), "inv_");
    let token = secret.token(&state.signing_key);
    let client_name: String = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT name FROM clients WHERE id = $1").bind(client.as_str()).fetch_optional(pool).await?
    })
    .ok_or_else(|| Error::not_found("client"))?;
    let expires_at = now + Duration::days(INVITE_TTL_DAYS);
    let mail = NewEmail::new(
        &state.config.email,
        now,
        &email,
        Message::ClientInvite(templates::ClientInvite {
            client_name,
            invited_by: who.email.clone(),
            accept_url: state
                .config
                .link("/accept-invite", Some(MARKER))?
                .to_string(),
            valid_days: u32::try_from(INVITE_TTL_DAYS).unwrap_or(7),
        }),
        Some(secret),
    )?
    .caused_by(Some(who.user_id.as_str()), Some(client.as_str()))
    .correlation(Some(id.as_str()));
    let row: InviteRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("UPDATE client_invites SET revoked_at = $3 WHERE client_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL")
            .bind(client.as_str())
            .bind(email.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Spent, revoked and expired invitations of this client go; the open ones are bounded.
        sqlx::query("DELETE FROM client_invites WHERE client_id = $1 AND (accepted_at IS NOT NULL OR revoked_at IS NOT NULL OR expires_at <= $2)")
            .bind(client.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM client_invites WHERE client_id = $1")
            .bind(client.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if open >= OPEN_PER_CLIENT {
            return Err(Error::invalid("too_many_invites", format!("this client has {OPEN_PER_CLIENT} open invitations; revoke some first")));
        }
        let row: InviteRow = sqlx::query_as(
            "INSERT INTO client_invites (id, client_id, email, token_hash, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, client_id, email, created_at, expires_at",
        )
        .bind(id.as_str())
        .bind(client.as_str())
        .bind(email.as_str())
        .bind(signing::token_hash(&token))
        .bind(who.user_id.as_str())
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        crate::record_email_on!(&mut *tx, &mail)?;
        record_on!(&mut *tx, now, actor, Entry { action: "client.member_invite", target_type: Some("client"), target_id: Some(client.as_str()), detail: json!({"invite_id": id}) })?;
        tx.commit().await?;
        row
    });
    Ok(row.into())
}

/// Accepts an invitation addressed to the caller: the caller becomes a member (idempotent).
pub async fn accept(
    state: &AppState,
    who: &Principal,
    token: &str,
    actor: &Actor,
) -> Result<MemberOut> {
    // Joining a client is a change: a read-only (support- or operator-scoped) token cannot.
    who.require(super::WRITERS)?;
    if token.len() > 256 {
        return Err(invalid());
    }
    let now = state.clock.now();
    let hash = signing::token_hash(token);
    let row: MemberRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        // Spent only by the address it was sent to, so a forwarded or leaked link is useless to
        // anyone else.
        let found: Option<(String, String)> = sqlx::query_as(
            "UPDATE client_invites SET accepted_at = $3
             WHERE token_hash = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3
             RETURNING id, client_id",
        )
        .bind(&hash)
        .bind(&who.email)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((invite, client)) = found else {
            return Err(invalid());
        };
        sqlx::query("INSERT INTO client_memberships (client_id, user_id, added_at) VALUES ($1, $2, $3) ON CONFLICT (client_id, user_id) DO NOTHING")
            .bind(&client)
            .bind(who.user_id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        record_on!(&mut *tx, now, actor, Entry { action: "client.member_add", target_type: Some("client"), target_id: Some(&client), detail: json!({"user_id": who.user_id, "invite_id": invite}) })?;
        let row: MemberRow = sqlx::query_as(&format!("{MEMBER_SELECT} WHERE m.client_id = $1 AND m.user_id = $2"))
            .bind(&client)
            .bind(who.user_id.as_str())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        row
    });
    Ok(row.into())
}

/// A client's open invitations (not accepted, revoked or expired), newest first.
pub async fn list(state: &AppState, who: &Principal, client: &ClientId) -> Result<Vec<InviteOut>> {
    ensure_can_read(state, who, client.as_str()).await?;
    let now = state.clock.now();
    let rows: Vec<InviteRow> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT id, client_id, email, created_at, expires_at FROM client_invites
             WHERE client_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2
             ORDER BY id DESC LIMIT 1000",
        )
        .bind(client.as_str())
        .bind(now)
        .fetch_all(pool)
        .await?
    });
    Ok(rows.into_iter().map(InviteOut::from).collect())
}

/// Revokes an open invitation: its link stops working.
pub async fn revoke(
    state: &AppState,
    who: &Principal,
    client: &ClientId,
    invite: &InviteId,
    actor: &Actor,
) -> Result<()> {
    ensure_can_write(state, who, client.as_str()).await?;
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let done = sqlx::query("UPDATE client_invites SET revoked_at = $3 WHERE id = $1 AND client_id = $2 AND accepted_at IS NULL AND revoked_at IS NULL")
            .bind(invite.as_str())
            .bind(client.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found("invitation"));
        }
        record_on!(&mut *tx, now, actor, Entry { action: "client.invite_revoke", target_type: Some("client"), target_id: Some(client.as_str()), detail: json!({"invite_id": invite}) })?;
        tx.commit().await?;
    });
    Ok(())
}
