//! Password hashing with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), off the async
//! runtime so a burst of logins cannot stall other requests.

use crate::domain::Password;
use crate::error::{Error, Result};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

pub async fn hash(password: &Password) -> Result<String> {
    let pw = password.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(pw.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("argon2 hash failed: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// Whether `candidate` matches `stored`. With `stored = None` (no such user) a dummy hash is
/// checked anyway, so the answer takes as long either way.
pub async fn verify(stored: Option<String>, candidate: &str) -> Result<bool> {
    let candidate = candidate.to_owned();
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = match stored {
            Some(s) => s,
            None => dummy_hash()?,
        };
        let parsed = PasswordHash::new(&stored)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored hash unreadable: {e}")))?;
        let ok = Argon2::default()
            .verify_password(candidate.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(|e| Error::Internal(e.into()))?
}

/// The argon2id hash of a random password nobody knows, with the same parameters, made once.
fn dummy_hash() -> Result<String> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let salt = SaltString::generate(&mut OsRng);
    let h = Argon2::default()
        .hash_password(crate::auth::signing::random_token("").as_bytes(), &salt)
        .map_err(|e| Error::Internal(anyhow::anyhow!("argon2 hash failed: {e}")))?
        .to_string();
    Ok(DUMMY.get_or_init(|| h).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pw = Password::parse("correct horse battery", None).unwrap();
        let h = hash(&pw).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Some(h.clone()), "correct horse battery")
            .await
            .unwrap());
        assert!(!verify(Some(h), "wrong horse battery").await.unwrap());
    }

    #[tokio::test]
    async fn an_unknown_user_never_verifies() {
        assert!(!verify(None, "anything at all").await.unwrap());
    }
}
