//! Logging in and out of a profile's server.
//!
//! Login trades the email and password for a short session, uses it once to create an API token
//! scoped to the user's own role (the server never grants more), stores that token in the
//! keychain, and ends the session — the password is never stored and the token never leaves the
//! keychain and this process. Logout revokes the token on the server and deletes it from the
//! keychain (both are attempted; a server that cannot be reached does not keep the keychain entry).

use crate::error::{Error, ErrorKind};
use crate::profiles::Profiles;
use crate::secrets::SecretStore;
use airwave_api::{ApiClient, ApiTokenIn, UserOut};

/// How long a console token lives; the console renews it well before (`renew_if_due`).
pub const TOKEN_DAYS: u32 = 90;
/// A token with less than this left is renewed on the next call.
pub const RENEW_WITHIN_DAYS: i64 = 30;

/// The keychain entry of a profile's token: bound to the origin (scheme, host, port) it was
/// issued by, so a profile whose URL changes finds no token and needs a new login — a token is
/// never sent to another server. (The local sidecar's, which the console mints itself for a
/// port that changes, is bound to the profile alone.)
pub fn keychain_key(profile: &crate::profiles::Profile) -> String {
    if profile.local {
        profile.id.clone()
    } else {
        format!(
            "{}@{}",
            profile.id,
            profile.url.origin().ascii_serialization()
        )
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this computer".into())
}

/// Logs `email` in to profile `id`; the token goes to `secrets`, the email and token id to the
/// profile. Returns who logged in.
pub async fn login(
    profiles: &mut Profiles,
    secrets: &dyn SecretStore,
    id: &str,
    email: &str,
    password: &str,
) -> Result<UserOut, Error> {
    let profile = profiles.get(id)?.clone();
    profile.check_transport()?;
    let api = ApiClient::new(profile.url.clone());
    let session = api.login(email, password).await?;
    let authed = api.with_token(session.token);
    let created = authed.create_token(&console_token()).await?;
    secrets.set(&keychain_key(&profile), &created.token)?;
    // The password session has done its job; if ending it fails, it expires by itself.
    let _ = authed.logout().await;
    let p = profiles.get_mut(id)?;
    p.email = Some(session.user.email.clone());
    p.token_id = Some(created.info.id.clone());
    p.token_expires_at = created.info.expires_at;
    profiles.save()?;
    Ok(session.user)
}

fn console_token() -> ApiTokenIn {
    ApiTokenIn {
        name: format!("AIrWAVE Ops console on {}", host_name()),
        role: None,
        expires_in_days: Some(TOKEN_DAYS),
    }
}

/// Renews profile `id`'s token when less than [`RENEW_WITHIN_DAYS`] of its life is left (or its
/// expiry is unknown: a token from an older console): a new token is made with the current one
/// and filed in its place, then the old one is revoked. A live
/// stream on the old token ends when the server sees it revoked and resumes with the new one
/// (it reads the keychain on every connect).
pub async fn renew_if_due(
    profiles: &mut Profiles,
    secrets: &dyn SecretStore,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Renewal, Error> {
    let profile = profiles.get(id)?.clone();
    let (Some(old_id), Some(_)) = (&profile.token_id, &profile.email) else {
        return Ok(Renewal::NotDue);
    };
    if profile.local {
        return Ok(Renewal::NotDue); // the sidecar's token is minted by the console at each start
    }
    let due = profile
        .token_expires_at
        .is_none_or(|at| at - chrono::Duration::days(RENEW_WITHIN_DAYS) <= now);
    if !due {
        return Ok(Renewal::NotDue);
    }
    let current = client(profiles, secrets, id)?;
    let created = current.create_token(&console_token()).await?;
    if let Err(e) = secrets.set(&keychain_key(&profile), &created.token) {
        // Never a live token nobody holds: the new one goes, the current one stays in use.
        let _ = ApiClient::new(profile.url.clone())
            .with_token(created.token)
            .revoke_token(&created.info.id)
            .await;
        return Err(e);
    }
    let p = profiles.get_mut(id)?;
    p.token_id = Some(created.info.id.clone());
    p.token_expires_at = created.info.expires_at;
    profiles.save()?;
    // The new token is filed; if revoking the old one fails, it still expires by itself.
    let revoked = current.revoke_token(old_id).await.map_err(Error::from);
    Ok(Renewal::Renewed {
        old_not_revoked: revoked.err(),
    })
}

/// What [`renew_if_due`] did.
#[derive(Debug)]
pub enum Renewal {
    NotDue,
    /// A new token is in use; the old one could not be revoked when this holds why (it expires
    /// by itself).
    Renewed {
        old_not_revoked: Option<Error>,
    },
}

/// Profile `id`'s token from the keychain, once its transport is allowed; `Unauthenticated`
/// when there is none.
pub fn token(profiles: &Profiles, secrets: &dyn SecretStore, id: &str) -> Result<String, Error> {
    let profile = profiles.get(id)?;
    profile.check_transport()?;
    secrets.get(&keychain_key(profile))?.ok_or_else(|| {
        Error::new(
            ErrorKind::Unauthenticated,
            format!("log in to {} first", profile.name),
        )
    })
}

/// A client for profile `id` with its keychain token; `Unauthenticated` when there is none.
pub fn client(
    profiles: &Profiles,
    secrets: &dyn SecretStore,
    id: &str,
) -> Result<ApiClient, Error> {
    let token = token(profiles, secrets, id)?;
    Ok(ApiClient::new(profiles.get(id)?.url.clone()).with_token(token))
}

/// Revokes the profile's token on the server and forgets it locally. A server that cannot be
/// reached is reported after the local token is gone.
pub async fn logout(
    profiles: &mut Profiles,
    secrets: &dyn SecretStore,
    id: &str,
) -> Result<(), Error> {
    let profile = profiles.get(id)?.clone();
    // Tokens filed before entries were bound to an origin sit under the bare profile id.
    let legacy = if profile.local {
        None
    } else {
        secrets.get(&profile.id)?
    };
    let token = secrets.get(&keychain_key(&profile))?.or(legacy);
    let remote = match (token, &profile.token_id) {
        // A token is never sent where its transport is not allowed; it expires by itself.
        _ if profile.check_transport().is_err() => Ok(()),
        (Some(token), Some(token_id)) => ApiClient::new(profile.url.clone())
            .with_token(token)
            .revoke_token(token_id)
            .await
            .map_err(Error::from),
        _ => Ok(()),
    };
    secrets.delete(&keychain_key(&profile))?;
    if !profile.local {
        secrets.delete(&profile.id)?;
    }
    let p = profiles.get_mut(id)?;
    p.email = None;
    p.token_id = None;
    p.token_expires_at = None;
    profiles.save()?;
    match remote {
        // Already revoked or expired: the goal is reached.
        Err(e) if e.kind == ErrorKind::Unauthenticated => Ok(()),
        other => other,
    }
}
