//! Accounts and credentials: registration, login with lockout, sessions (JWTs bound to a revocable
//! session row), password reset with single-use expiring tokens, API tokens for the console, and
//! roles. HTTP lives in `routes.rs`; this module knows nothing of it.

pub mod password;
pub mod registration;
pub mod routes;
pub mod signing;
pub mod throttle;

use crate::audit::{self, Actor, Entry};
use crate::db::BeginWrite as _;
use crate::domain::{self, Email, Password};
use crate::email::secrets::{LinkSecret, MARKER};
use crate::email::templates::{self, Message};
use crate::email::NewEmail;
use crate::error::{Error, Result};
use crate::events::types;
use crate::ids::{ApiTokenId, ResetId, SessionId, UserId};
use crate::state::AppState;
use crate::{emit_event, record_on, with_db};
use airwave_api::{ApiTokenCreatedOut, ApiTokenIn, ApiTokenOut, LoginOut, Page, Role, UserOut};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// Reset links live this long.
const RESET_TTL_MINUTES: i64 = 60;
/// Prefix of API tokens, so they are recognisable (and findable by secret scanners).
pub const API_TOKEN_PREFIX: &str = "awt_";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    pub email: String,
    /// The role in force for this request: the token's scope, never more than the user's role.
    pub role: Role,
    pub via: Via,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Via {
    Session(SessionId),
    ApiToken(ApiTokenId),
}

impl Principal {
    pub fn actor(&self, ip: Option<String>) -> Actor {
        Actor {
            user_id: Some(self.user_id.to_string()),
            token_id: match &self.via {
                Via::ApiToken(t) => Some(t.to_string()),
                Via::Session(_) => None,
            },
            ip,
        }
    }

    /// Fails with 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<()> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Error::forbidden())
        }
    }

    /// Staff roles see every client's data; members only their own clients'.
    pub fn is_staff(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Operator | Role::Support)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl UserRow {
    fn into_out(self) -> Result<UserOut> {
        Ok(UserOut {
            id: self.id,
            email: self.email,
            name: self.name,
            role: parse_role(&self.role)?,
            created_at: self.created_at,
            disabled_at: self.disabled_at,
        })
    }
}

fn parse_role(s: &str) -> Result<Role> {
    s.parse()
        .map_err(|e| Error::Internal(anyhow::Error::new(e)))
}

const USER_COLUMNS: &str = "id, email, name, role, created_at, disabled_at";

/// Creates a user with a password: used by `admin create-user` (registration goes through
/// [`registration`], which confirms the address first).
pub async fn create_user(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
    role: Role,
    actor: &Actor,
) -> Result<UserOut> {
    let email = Email::parse(email)?;
    let password = Password::parse(password, Some(&email))?;
    let name = domain::name("name", name, 100)?;
    let hash = password::hash(&password).await?;
    let user = NewUser {
        email: &email,
        name: &name,
        password_hash: &hash,
        role,
        registration: None,
    };
    insert_user(state, user, actor).await
}

/// A user about to be stored, with a checked address and name and an already hashed password.
struct NewUser<'a> {
    email: &'a Email,
    name: &'a str,
    password_hash: &'a str,
    role: Role,
    /// The pending registration this account confirms: spent in the same transaction.
    registration: Option<&'a str>,
}

async fn insert_user(state: &AppState, new: NewUser<'_>, actor: &Actor) -> Result<UserOut> {
    let now = state.clock.now();
    let id = UserId::new(now);
    let role = new.role;
    let row: UserRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        if let Some(registration) = new.registration {
            let spent = sqlx::query("UPDATE registrations SET used_at = $2 WHERE id = $1 AND used_at IS NULL")
                .bind(registration)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if spent.rows_affected() == 0 {
                return Err(Error::conflict("registration_spent", "this registration was already confirmed"));
            }
        }
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO users (id, email, name, password_hash, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {USER_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(new.email.as_str())
        .bind(new.name)
        .bind(new.password_hash)
        .bind(role.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| Error::from(e).on_unique("email_taken", "an account with this e-mail address already exists"))?;
        emit_event!(&mut *tx, now, types::USER_REGISTERED, id.as_str(), json!({"user_id": id, "role": role}))?;
        let actor = Actor { user_id: actor.user_id.clone().or_else(|| Some(id.to_string())), ..actor.clone() };
        record_on!(&mut *tx, now, &actor, Entry { action: "user.create", target_type: Some("user"), target_id: Some(id.as_str()), detail: json!({"role": role}) })?;
        tx.commit().await?;
        row
    });
    row.into_out()
}

/// Logs a user in: a session row plus a JWT naming it. Unknown addresses and wrong passwords get
/// the same answer in about the same time; too many failures lock the address for a while.
pub async fn login(
    state: &AppState,
    email: &str,
    password: &str,
    ip: Option<String>,
) -> Result<LoginOut> {
    let invalid = || Error::Unauthenticated("wrong e-mail address or password".into());
    let now = state.clock.now();
    let Ok(email) = Email::parse(email) else {
        return Err(invalid());
    };
    // Counted before the password is checked, atomically (see `throttle`).
    let attempt = throttle::Attempt::new(email.as_str(), ip.as_deref());
    throttle::reserve(state, &attempt, now).await?;
    let found: Option<(String, String)> = with_db!(&state.db, pool => {
        // A disabled account answers as an unknown one.
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1 AND disabled_at IS NULL").bind(email.as_str()).fetch_optional(pool).await?
    });
    let (user_id, stored) = match found {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = match password::verify(stored, password).await {
        Ok(ok) => ok,
        Err(e) => {
            if password::is_busy(&e) {
                throttle::refund(state, &attempt).await?;
            }
            return Err(e);
        }
    };
    let actor = Actor {
        user_id: user_id.clone(),
        token_id: None,
        ip,
    };
    let Some(user_id) = user_id.filter(|_| ok) else {
        throttle::failed(state, &attempt, now).await?;
        audit::record(
            &state.db,
            state.clock.as_ref(),
            &actor,
            Entry {
                action: "auth.login_failed",
                target_type: Some("user"),
                target_id: actor.user_id.as_deref(),
                detail: json!({"email": email.as_str()}),
            },
        )
        .await?;
        return Err(invalid());
    };
    let ttl =
        Duration::from_std(state.config.session_ttl).map_err(|e| Error::Internal(e.into()))?;
    let session = SessionId::new(now);
    let expires_at = now + ttl;
    let user: UserRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(session.as_str())
            .bind(&user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        record_on!(&mut *tx, now, &actor, Entry { action: "auth.login", target_type: Some("session"), target_id: Some(session.as_str()), detail: json!({}) })?;
        let user: UserRow = sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(&user_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        user
    });
    throttle::succeeded(state, &attempt).await?;
    let claims = signing::SessionClaims {
        sub: user_id,
        sid: session.to_string(),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
    };
    Ok(LoginOut {
        token: signing::sign_jwt(&state.signing_key, &claims),
        token_type: "Bearer".into(),
        expires_at,
        user: user.into_out()?,
    })
}

/// Resolves a bearer token (a session JWT or an `awt_` API token) to its principal.
pub async fn authenticate(state: &AppState, bearer: &str) -> Result<Principal> {
    let now = state.clock.now();
    let invalid =
        || Error::Unauthenticated("the bearer token is invalid, expired or revoked".into());
    if bearer.starts_with(API_TOKEN_PREFIX) {
        let hash = signing::token_hash(bearer);
        let row: Option<(String, String, String, String, String)> = with_db!(&state.db, pool => {
            sqlx::query_as(
                "SELECT t.id, t.role, u.id, u.email, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $2)
                   AND u.disabled_at IS NULL",
            )
            .bind(&hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let (token_id, token_role, user_id, email, user_role) = row.ok_or_else(invalid)?;
        let (token_role, user_role) = (parse_role(&token_role)?, parse_role(&user_role)?);
        // A user whose role was lowered keeps no more privilege through an older token.
        if !token_role.can_be_scoped_from(user_role) {
            return Err(invalid());
        }
        with_db!(&state.db, pool => {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)")
                .bind(&token_id)
                .bind(now)
                .bind(now - Duration::seconds(30))
                .execute(pool)
                .await?;
        });
        return Ok(Principal {
            user_id: user_id
                .try_into()
                .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            email,
            role: token_role,
            via: Via::ApiToken(
                token_id
                    .try_into()
                    .map_err(|e| Error::Internal(anyhow::Error::new(e)))?,
            ),
        });
    }
    let claims =
        signing::verify_jwt(&state.signing_key, bearer, now.timestamp()).ok_or_else(invalid)?;
    let row: Option<(String, String)> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT u.email, u.role FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3
               AND u.disabled_at IS NULL",
        )
        .bind(&claims.sid)
        .bind(&claims.sub)
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    let (email, role) = row.ok_or_else(invalid)?;
    Ok(Principal {
        user_id: claims.sub.try_into().map_err(|_| invalid())?,
        email,
        role: parse_role(&role)?,
        via: Via::Session(claims.sid.try_into().map_err(|_| invalid())?),
    })
}

/// Ends the caller's session, or revokes the API token it used.
pub async fn logout(state: &AppState, who: &Principal, actor: &Actor) -> Result<()> {
    let now = state.clock.now();
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        match &who.via {
            Via::Session(s) => sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(s.as_str()).bind(now).execute(&mut *tx).await?,
            Via::ApiToken(t) => sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(t.as_str()).bind(now).execute(&mut *tx).await?,
        };
        record_on!(&mut *tx, now, actor, Entry { action: "auth.logout", target_type: None, target_id: None, detail: json!({}) })?;
        tx.commit().await?;
    });
    state.streams.credentials_changed();
    Ok(())
}

pub async fn get_user(state: &AppState, id: &UserId) -> Result<UserOut> {
    let row: Option<UserRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1")).bind(id.as_str()).fetch_optional(pool).await?
    });
    row.ok_or_else(|| Error::not_found("user"))?.into_out()
}

/// Starts a password reset. Answers the same whether the address is known or not; when it is, a
/// single-use link valid for an hour is mailed (the e-mail outbox) and older links stop working.
pub async fn request_password_reset(
    state: &AppState,
    email: &str,
    ip: Option<String>,
) -> Result<()> {
    let Ok(email) = Email::parse(email) else {
        return Ok(());
    };
    let now = state.clock.now();
    let user: Option<(String, String)> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, name FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(pool).await?
    });
    let Some((user_id, name)) = user else {
        return Ok(());
    };
    let reset_id = ResetId::new(now);
    let secret = LinkSecret::derived("password_reset", reset_id.as_str(), "rst_");
    let token = secret.token(&state.signing_key);
    let mail = NewEmail::new(
        &state.config.email,
        now,
        &email,
        Message::PasswordReset(templates::PasswordReset {
            name,
            reset_url: state
                .config
                .link("/reset-password", Some(MARKER))?
                .to_string(),
            valid_minutes: u32::try_from(RESET_TTL_MINUTES).unwrap_or(60),
        }),
        Some(secret),
    )?
    .correlation(Some(&user_id));
    let actor = Actor {
        user_id: Some(user_id.clone()),
        token_id: None,
        ip,
    };
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL").bind(&user_id).bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO password_resets (id, user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(reset_id.as_str())
            .bind(&user_id)
            .bind(signing::token_hash(&token))
            .bind(now)
            .bind(now + Duration::minutes(RESET_TTL_MINUTES))
            .execute(&mut *tx)
            .await?;
        crate::record_email_on!(&mut *tx, &mail)?;
        record_on!(&mut *tx, now, &actor, Entry { action: "auth.password_reset_requested", target_type: Some("user"), target_id: Some(&user_id), detail: json!({}) })?;
        tx.commit().await?;
    });
    Ok(())
}

/// Sets a new password with a reset token; the token is spent and every session of the user ends.
pub async fn confirm_password_reset(
    state: &AppState,
    token: &str,
    new_password: &str,
    ip: Option<String>,
) -> Result<()> {
    let invalid = || {
        Error::invalid(
            "invalid_token",
            "this reset link is invalid, used or expired",
        )
    };
    if token.len() > 256 {
        return Err(invalid());
    }
    let now = state.clock.now();
    let hash = signing::token_hash(token);
    let found: Option<(String, String, String)> = with_db!(&state.db, pool => {
        sqlx::query_as(
            "SELECT r.id, u.id, u.email FROM password_resets r JOIN users u ON u.id = r.user_id
             WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > $2",
        )
        .bind(&hash)
        .bind(now)
        .fetch_optional(pool)
        .await?
    });
    let (reset_id, user_id, email) = found.ok_or_else(invalid)?;
    let email = Email::parse(&email)?;
    let password = Password::parse(new_password, Some(&email))?;
    let password_hash = password::hash(&password).await?;
    let actor = Actor {
        user_id: Some(user_id.clone()),
        token_id: None,
        ip,
    };
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let spent = sqlx::query("UPDATE password_resets SET used_at = $2 WHERE id = $1 AND used_at IS NULL").bind(&reset_id).bind(now).execute(&mut *tx).await?;
        if spent.rows_affected() != 1 {
            return Err(invalid());
        }
        sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1").bind(&user_id).bind(&password_hash).bind(now).execute(&mut *tx).await?;
        sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL").bind(&user_id).bind(now).execute(&mut *tx).await?;
        // Whoever knew the old password may have made tokens with it.
        if state.config.reset_revokes_tokens {
            sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL").bind(&user_id).bind(now).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM login_throttle WHERE email = $1").bind(email.as_str()).execute(&mut *tx).await?;
        record_on!(&mut *tx, now, &actor, Entry { action: "auth.password_reset", target_type: Some("user"), target_id: Some(&user_id), detail: json!({"tokens_revoked": state.config.reset_revokes_tokens}) })?;
        tx.commit().await?;
    });
    state.streams.credentials_changed();
    Ok(())
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    user_id: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    fn into_out(self) -> Result<ApiTokenOut> {
        Ok(ApiTokenOut {
            id: self.id,
            user_id: self.user_id,
            name: self.name,
            role: parse_role(&self.role)?,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        })
    }
}

const TOKEN_COLUMNS: &str =
    "id, user_id, name, role, created_at, last_used_at, expires_at, revoked_at";

/// Issues an API token for `user` with at most `user_role`'s privilege. The secret is returned
/// once and only its hash is kept.
pub async fn issue_token(
    state: &AppState,
    user: &UserId,
    user_role: Role,
    input: &ApiTokenIn,
    actor: &Actor,
) -> Result<ApiTokenCreatedOut> {
    let name = domain::name("name", &input.name, 100)?;
    let role = input.role.unwrap_or(user_role);
    if !role.can_be_scoped_from(user_role) {
        return Err(Error::Forbidden(format!(
            "a {user_role} cannot create a token with the {role} role"
        )));
    }
    let now = state.clock.now();
    let expires_at = match input.expires_in_days {
        None => None,
        Some(d @ 1..=365) => Some(now + Duration::days(i64::from(d))),
        Some(_) => {
            return Err(Error::invalid(
                "validation_failed",
                "`expires_in_days` must be between 1 and 365",
            ))
        }
    };
    let token = signing::random_token(API_TOKEN_PREFIX);
    let id = ApiTokenId::new(now);
    let row: TokenRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let row: TokenRow = sqlx::query_as(&format!(
            "INSERT INTO api_tokens (id, user_id, name, role, token_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(&name)
        .bind(role.as_str())
        .bind(signing::token_hash(&token))
        .bind(now)
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
        record_on!(&mut *tx, now, actor, Entry { action: "token.create", target_type: Some("api_token"), target_id: Some(id.as_str()), detail: json!({"role": role, "name": name}) })?;
        tx.commit().await?;
        row
    });
    Ok(ApiTokenCreatedOut {
        token,
        info: row.into_out()?,
    })
}

pub async fn list_tokens(state: &AppState, user: &UserId) -> Result<Vec<ApiTokenOut>> {
    let rows: Vec<TokenRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC LIMIT 500"))
            .bind(user.as_str())
            .fetch_all(pool)
            .await?
    });
    rows.into_iter().map(TokenRow::into_out).collect()
}

/// Revokes a token: the caller's own, or anyone's for an admin.
pub async fn revoke_token(
    state: &AppState,
    who: &Principal,
    id: &ApiTokenId,
    actor: &Actor,
) -> Result<()> {
    let now = state.clock.now();
    let owner: Option<String> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT user_id FROM api_tokens WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await?
    });
    match owner {
        Some(o) if o == who.user_id.as_str() || who.role == Role::Admin => {}
        _ => return Err(Error::not_found("token")),
    }
    with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL").bind(id.as_str()).bind(now).execute(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "token.revoke", target_type: Some("api_token"), target_id: Some(id.as_str()), detail: json!({}) })?;
        tx.commit().await?;
    });
    state.streams.credentials_changed();
    Ok(())
}

pub async fn list_users(
    state: &AppState,
    limit: i64,
    cursor: Option<&UserId>,
) -> Result<Page<UserOut>> {
    let rows: Vec<UserRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
        ))
        .bind(cursor.map(UserId::as_str))
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    let items = rows
        .into_iter()
        .map(UserRow::into_out)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::paging::page(items, limit, |u| u.id.clone()))
}

/// Changes a user's role. The last admin cannot be demoted, so the system always has one.
pub async fn set_role(state: &AppState, id: &UserId, role: Role, actor: &Actor) -> Result<UserOut> {
    let now = state.clock.now();
    let row: UserRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let current: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1").bind(id.as_str()).fetch_optional(&mut *tx).await?;
        let current = current.ok_or_else(|| Error::not_found("user"))?;
        if current == "admin" && role != Role::Admin {
            let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL").fetch_one(&mut *tx).await?;
            if admins <= 1 {
                return Err(Error::conflict("last_admin", "this is the only admin; make another admin first"));
            }
        }
        let row: UserRow = sqlx::query_as(&format!("UPDATE users SET role = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}"))
            .bind(id.as_str())
            .bind(role.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        record_on!(&mut *tx, now, actor, Entry { action: "user.role_change", target_type: Some("user"), target_id: Some(id.as_str()), detail: json!({"from": current, "to": role}) })?;
        tx.commit().await?;
        row
    });
    state.streams.credentials_changed();
    row.into_out()
}

/// Disables (or enables) a user. Disabling ends every session and revokes every API token at
/// once; an admin cannot disable themselves or the last enabled admin.
pub async fn set_disabled(
    state: &AppState,
    who: &Principal,
    id: &UserId,
    disabled: bool,
    reason: Option<&str>,
    actor: &Actor,
) -> Result<UserOut> {
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(Error::invalid(
            "validation_failed",
            "`reason` must be at most 500 characters",
        ));
    }
    if disabled && who.user_id == *id {
        return Err(Error::conflict(
            "self_disable",
            "you cannot disable your own account",
        ));
    }
    let now = state.clock.now();
    let row: UserRow = with_db!(&state.db, pool => {
        let mut tx = pool.begin_write().await?;
        let current: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1").bind(id.as_str()).fetch_optional(&mut *tx).await?;
        let current = current.ok_or_else(|| Error::not_found("user"))?;
        if disabled && current == "admin" {
            let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL").fetch_one(&mut *tx).await?;
            if admins <= 1 {
                return Err(Error::conflict("last_admin", "this is the only admin; make another admin first"));
            }
        }
        let row: UserRow = if disabled {
            sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL").bind(id.as_str()).bind(now).execute(&mut *tx).await?;
            sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL").bind(id.as_str()).bind(now).execute(&mut *tx).await?;
            sqlx::query_as(&format!("UPDATE users SET disabled_at = COALESCE(disabled_at, $2), disabled_reason = $3, updated_at = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"))
                .bind(id.as_str()).bind(now).bind(reason).fetch_one(&mut *tx).await?
        } else {
            sqlx::query_as(&format!("UPDATE users SET disabled_at = NULL, disabled_reason = NULL, updated_at = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"))
                .bind(id.as_str()).bind(now).fetch_one(&mut *tx).await?
        };
        let action = if disabled { "user.disable" } else { "user.enable" };
        record_on!(&mut *tx, now, actor, Entry { action, target_type: Some("user"), target_id: Some(id.as_str()), detail: json!({"reason": reason}) })?;
        tx.commit().await?;
        row
    });
    state.streams.credentials_changed();
    row.into_out()
}

/// Looks a user up by e-mail (for the CLI and for adding members).
pub async fn find_by_email(state: &AppState, email: &str) -> Result<Option<UserOut>> {
    let email = Email::parse(email)?;
    let row: Option<UserRow> = with_db!(&state.db, pool => {
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1")).bind(email.as_str()).fetch_optional(pool).await?
    });
    row.map(UserRow::into_out).transpose()
}
