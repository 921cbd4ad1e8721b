//! Registration confirmed by e-mail. Asking for an account answers the same whether or not the
//! address has one: a new address gets a confirmation link (the account exists once it is
//! followed), a taken one a note that it already has an account. Either way the password is
//! hashed, so both take about the same time; only the link token's hash is stored.
//!
//! Confirming takes the link's token **and the password chosen when asking**: someone who asks
//! for an account with another person's address cannot have that person create it for them by
//! clicking the link (the person does not know the password), and a newer request never cancels
//! an older one (each has its own link), so nobody can keep another's link from working.

use super::{insert_user, password, signing, NewUser};
use crate::audit::{Actor, Entry};
use crate::db::BeginWrite as _;
use crate::domain::{self, Email, Password};
use crate::email::secrets::{LinkSecret, MARKER};
use crate::email::templates::{self, Message};
use crate::email::NewEmail;
use crate::error::{Error, Result};
use crate::ids::RegistrationId;
use crate::state::AppState;
use crate::{record_on, with_db};
use airwave_api::{Role, UserOut};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

/// Confirmation links live this long.
const REGISTRATION_TTL_HOURS: i64 = 24;
/// Open requests kept per address; past it a request is answered the same but not stored or
/// mailed (a flood of requests for one address costs neither rows nor mail).
const OPEN_PER_ADDRESS: i64 = 5;

fn invalid() -> Error {
    Error::invalid(
        "invalid_token",
        "this confirmation link is invalid, used or expired, or the password is not the one chosen when asking",
    )
}

/// Asks for an account. Bad input is refused (that reveals nothing about other accounts); a good
/// request is answered the same way whether the address is taken or not.
pub async fn request(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
    ip: Option<String>,
) -> Result<()> {
    let email = Email::parse(email)?;
    let password = Password::parse(password, Some(&email))?;
    let name = domain::name("name", name, 100)?;
    let hash = password::hash(&password).await?;
    let now = state.clock.now();
    let existing: Option<(String, String)> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, name FROM users WHERE email = $1").bind(email.as_str()).fetch_optional(pool).await?
    });
    let actor = Actor {
        user_id: None,
        token_id: None,
        ip,
    };
    let link = |path: &str, token: Option<&str>| state.config.link(path, token);
    match existing {
        Some((user_id, existing_name)) => {
            let mail = NewEmail::new(
                &state.config.email,
                now,
                &email,
                Message::AccountExists(templates::AccountExists {
                    name: existing_name,
                    login_url: link("/login", None)?.to_string(),
                    reset_url: link("/reset-password", None)?.to_string(),
                }),
                None,
            )?;
            with_db!(&state.db, pool => {
                let mut tx = pool.begin_write().await?;
                crate::record_email_on!(&mut *tx, &mail)?;
                record_on!(&mut *tx, now, &actor, Entry { action: "auth.register_existing", target_type: Some("user"), target_id: Some(&user_id), detail: json!({}) })?;
                tx.commit().await?;
            });
        }
        None => {
            let id = RegistrationId::new(now);
            let secret = LinkSecret::derived("registration", id.as_str(), "reg_");
            let token = secret.token(&state.signing_key);
            let mail = NewEmail::new(
                &state.config.email,
                now,
                &email,
                Message::ConfirmRegistration(templates::ConfirmRegistration {
                    name: name.clone(),
                    confirm_url: link("/confirm-registration", Some(MARKER))?.to_string(),
                    valid_hours: u32::try_from(REGISTRATION_TTL_HOURS).unwrap_or(24),
                }),
                Some(secret),
            )?;
            with_db!(&state.db, pool => {
                let mut tx = pool.begin_write().await?;
                sqlx::query("DELETE FROM registrations WHERE email = $1 AND (expires_at <= $2 OR used_at IS NOT NULL)")
                    .bind(email.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registrations WHERE email = $1")
                    .bind(email.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                if open >= OPEN_PER_ADDRESS {
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO registrations (id, email, name, password_hash, token_hash, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id.as_str())
                .bind(email.as_str())
                .bind(&name)
                .bind(&hash)
                .bind(signing::token_hash(&token))
                .bind(now)
                .bind(now + Duration::hours(REGISTRATION_TTL_HOURS))
                .execute(&mut *tx)
                .await?;
                crate::record_email_on!(&mut *tx, &mail)?;
                record_on!(&mut *tx, now, &actor, Entry { action: "auth.register_requested", target_type: Some("registration"), target_id: Some(id.as_str()), detail: json!({}) })?;
                tx.commit().await?;
            });
        }
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: String,
    email: String,
    name: String,
    password_hash: String,
    expires_at: DateTime<Utc>,
}

/// Follows a confirmation link with the password chosen when asking: the account is created
/// (role `member`) and the link is spent. A wrong password is the same error as a bad link.
pub async fn confirm(
    state: &AppState,
    token: &str,
    password: &str,
    ip: Option<String>,
) -> Result<UserOut> {
    if token.len() > 256 || password.len() > 1024 {
        return Err(invalid());
    }
    let now = state.clock.now();
    let found: Option<Pending> = with_db!(&state.db, pool => {
        sqlx::query_as("SELECT id, email, name, password_hash, expires_at FROM registrations WHERE token_hash = $1 AND used_at IS NULL")
            .bind(signing::token_hash(token))
            .fetch_optional(pool)
            .await?
    });
    let pending = found.filter(|p| p.expires_at > now).ok_or_else(invalid)?;
    if !password::verify(Some(pending.password_hash.clone()), password).await? {
        return Err(invalid());
    }
    let email = Email::parse(&pending.email)?;
    let actor = Actor {
        user_id: None,
        token_id: None,
        ip,
    };
    insert_user(
        state,
        NewUser {
            email: &email,
            name: &pending.name,
            password_hash: &pending.password_hash,
            role: Role::Member,
            registration: Some(&pending.id),
        },
        &actor,
    )
    .await
    // The address got an account meanwhile (an admin made one, or the link was followed twice).
    .map_err(|e| match e {
        Error::Conflict { .. } => invalid(),
        e => e,
    })
}
