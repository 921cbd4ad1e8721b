//! Where API tokens live. The console keeps them only in the OS keychain (Secret Service on
//! Linux, Keychain on macOS, Credential Manager on Windows) behind this seam; unit tests use
//! [`MemoryStore`]. Nothing else — the profiles file, logs, crash reports, the webview — ever
//! holds a token, and [`redact`] scrubs anything that looks like one from text that leaves.

use crate::error::Error;
use std::collections::HashMap;
use std::sync::Mutex;

/// The keychain service name entries are filed under.
pub const SERVICE: &str = "airwave-ops-console";

pub trait SecretStore: Send + Sync {
    fn get(&self, profile: &str) -> Result<Option<String>, Error>;
    fn set(&self, profile: &str, token: &str) -> Result<(), Error>;
    /// Deleting what is not there is not an error.
    fn delete(&self, profile: &str) -> Result<(), Error>;
}

/// Tokens in memory (unit tests; never the app).
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<HashMap<String, String>>);

impl SecretStore for MemoryStore {
    fn get(&self, profile: &str) -> Result<Option<String>, Error> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(profile)
            .cloned())
    }

    fn set(&self, profile: &str, token: &str) -> Result<(), Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(profile.into(), token.into());
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<(), Error> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(profile);
        Ok(())
    }
}

pub use airwave_api::redact::redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_inside_json_and_fields_named_like_secrets_are_scrubbed() {
        // What an unexpected `/api/tokens` answer turns into: the parse error and the body.
        let body = r#"{"token":"awt_Zx81kQ_secret-part","info":{"id":"tok_01","name":"console"},"session":"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl","password":"hunter2","nested":[{"api_key":"sk_live_42"}]}"#;
        let err = airwave_api::ClientError::Unexpected {
            status: reqwest::StatusCode::OK,
            body: format!("missing field `created_at` at line 1 column 200: {body}"),
        };
        let shown = crate::error::Error::from(err).message;
        for secret in [
            "Zx81kQ",
            "secret-part",
            "eyJhbGciOi",
            "hunter2",
            "sk_live_42",
        ] {
            assert!(!shown.contains(secret), "{secret} survived: {shown}");
        }
        assert!(shown.contains("tok_01"), "ids are not secrets: {shown}");
        // Not JSON: tokens are found inside other text too.
        let r = redact("GET /x?token=awt_abc123&y=1 'whsec_c2VjcmV0' (eyJa.eyJb.sig)");
        for secret in ["awt_abc123", "whsec_c2VjcmV0", "eyJa.eyJb.sig"] {
            assert!(!r.contains(secret), "{secret} survived: {r}");
        }
        assert_eq!(
            redact("a mawt_ word and awt_ alone"),
            "a mawt_ word and awt_ alone"
        );
        // JSON cut short (an excerpt): secret fields are still found.
        let cut = r#"bad answer: {"detail":"a \"b","user":{"id":"usr_1"},"password": "hunter2", "token":"eyJ-not-a-jwt-yet"#;
        let r = redact(cut);
        assert!(!r.contains("hunter2") && !r.contains("not-a-jwt"), "{r}");
        assert!(r.contains("usr_1"), "{r}");
        // Secrets beside one another in compact JSON, and a secret outside the JSON span.
        let r = redact(r#"{"email":"ada@example.com","url":"https://u:pw@db.example/x"}"#);
        assert!(!r.contains("ada@example.com") && !r.contains("u:pw"), "{r}");
        assert!(r.contains("db.example"), "{r}");
        let r = redact(r#"err [500]: {"password":"hunter2"}"#);
        assert!(!r.contains("hunter2"), "{r}");
    }

    #[test]
    fn an_unexpected_answer_keeps_only_the_start_of_its_body() {
        let huge = "x".repeat(100_000);
        let e = airwave_api::excerpt(huge.as_bytes());
        assert!(e.len() < airwave_api::ERROR_BODY_MAX + 64, "{}", e.len());
        assert!(e.ends_with("(100000 bytes in all)"));
        // Cut at a character boundary.
        let wide = "é".repeat(5000);
        assert!(airwave_api::excerpt(wide.as_bytes()).starts_with('é'));
    }

    #[test]
    fn the_memory_store_keeps_one_token_per_profile() {
        let s = MemoryStore::default();
        assert_eq!(s.get("p").unwrap(), None);
        s.set("p", "awt_1").unwrap();
        s.set("q", "awt_2").unwrap();
        assert_eq!(s.get("p").unwrap().as_deref(), Some("awt_1"));
        s.delete("p").unwrap();
        s.delete("p").unwrap();
        assert_eq!(s.get("p").unwrap(), None);
        assert_eq!(s.get("q").unwrap().as_deref(), Some("awt_2"));
    }
}

/// The OS keychain (what the app uses). Calls block briefly (D-Bus on Linux): call from a
/// blocking task.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringStore;

fn keychain_error(e: keyring::Error) -> Error {
    use crate::error::ErrorKind;
    match e {
        keyring::Error::PlatformFailure(_) | keyring::Error::NoStorageAccess(_) => Error::new(
            ErrorKind::NoKeychain,
            format!(
                "no OS keychain is available ({e}); on Linux the console needs a Secret Service \
                 such as GNOME Keyring or KWallet, running and unlocked"
            ),
        ),
        other => Error::new(ErrorKind::Io, format!("keychain: {other}")),
    }
}

impl KeyringStore {
    fn entry(profile: &str) -> Result<keyring::Entry, Error> {
        keyring::Entry::new(SERVICE, profile).map_err(keychain_error)
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, profile: &str) -> Result<Option<String>, Error> {
        match Self::entry(profile)?.get_password() {
            Ok(t) => Ok(Some(t)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keychain_error(e)),
        }
    }

    fn set(&self, profile: &str, token: &str) -> Result<(), Error> {
        Self::entry(profile)?
            .set_password(token)
            .map_err(keychain_error)
    }

    fn delete(&self, profile: &str) -> Result<(), Error> {
        match Self::entry(profile)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(keychain_error(e)),
        }
    }
}
