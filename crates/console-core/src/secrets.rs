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

/// Replaces API tokens (`awt_…`), JWTs (`eyJ….….…`), bearer credentials, URL passwords and
/// e-mail addresses with placeholders: for anything the console logs or reports.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    for word in text.split_inclusive(|c: char| c.is_whitespace()) {
        let (token, ws) = match word.char_indices().last() {
            Some((i, c)) if c.is_whitespace() => (&word[..i], &word[i..]),
            _ => (word, ""),
        };
        let bare = token.trim_matches(|c: char| "\"'(),;<>[]{}".contains(c));
        let replaced = if after_bearer && !bare.is_empty() {
            Some("[redacted]".to_owned())
        } else if bare.starts_with("awt_") {
            Some("awt_[redacted]".to_owned())
        } else if bare.starts_with("eyJ") && bare.matches('.').count() == 2 {
            Some("[redacted-jwt]".to_owned())
        } else if let Some(at) = bare.find('@').filter(|_| bare.contains("://")) {
            // scheme://user:pass@host → scheme://[redacted]@host
            bare.find("://")
                .map(|s| format!("{}[redacted]{}", &bare[..s + 3], &bare[at..]))
        } else if bare.contains('@') && bare.rsplit('@').next().is_some_and(|d| d.contains('.')) {
            Some("[email]".to_owned())
        } else {
            None
        };
        after_bearer = bare.eq_ignore_ascii_case("bearer");
        match replaced {
            Some(r) => out.push_str(&token.replace(bare, &r)),
            None => out.push_str(token),
        }
        out.push_str(ws);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_text() {
        let text = "login as ada@example.com with awt_abc123 at https://u:pw@host.example/x, header Authorization: Bearer eyJa.eyJb.sig";
        let r = redact(text);
        for secret in ["ada@example.com", "awt_abc123", "u:pw", "eyJa.eyJb.sig"] {
            assert!(!r.contains(secret), "{secret} survived: {r}");
        }
        assert!(r.contains("host.example"), "{r}");
        assert_eq!(redact("nothing to hide here"), "nothing to hide here");
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
