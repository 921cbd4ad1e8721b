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

/// Field names whose values are secrets wherever they appear in JSON.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "authorization",
    "api_key",
    "apikey",
    "dsn",
    "cookie",
    "private_key",
    "access_key",
    "signing_key",
];

fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_FIELDS.iter().any(|f| n.contains(f)) && !n.ends_with("_id") && n != "token_type"
}

/// Replaces API tokens (`awt_…`), webhook secrets (`whsec_…`), JWTs (`eyJ….….…`), bearer
/// credentials, URL credentials and e-mail addresses with placeholders, and in JSON every value
/// of a field named like a secret (`token`, `password`, `secret`…): for anything the console logs
/// or reports. Tokens are found inside any text (JSON strings, quotes, query strings), not only
/// as whole words.
pub fn redact(text: &str) -> String {
    // JSON (a whole answer, or the object inside an error message): structurally.
    if let Some((start, end)) = json_span(text) {
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text[start..end]) {
            redact_json(&mut v);
            return format!(
                "{}{}{}",
                redact_words(&redact_json_pairs(&text[..start])),
                v,
                redact_words(&redact_json_pairs(&text[end..]))
            );
        }
    }
    // Not parseable (cut short, say): `"secret_field": "value"` pairs are still found.
    redact_words(&redact_json_pairs(text))
}

/// `"<field named like a secret>": "<value>"` in text that is JSON-like but not parseable.
fn redact_json_pairs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(q) = rest.find('"') {
        out.push_str(&rest[..=q]);
        rest = &rest[q + 1..];
        let Some(kend) = string_end(rest) else { break };
        let key = &rest[..kend];
        out.push_str(&rest[..=kend]);
        rest = &rest[kend + 1..];
        let after = rest.trim_start();
        let Some(value) = after.strip_prefix(':').map(str::trim_start) else {
            continue;
        };
        if !is_secret_field(key) || !value.starts_with('"') {
            continue;
        }
        // Keep what separates key and value, drop the value up to its closing quote (or the end).
        let sep = rest.len() - value.len();
        out.push_str(&rest[..sep]);
        let body = &value[1..];
        let end = string_end(body).unwrap_or(body.len());
        out.push_str("\"[redacted]\"");
        rest = body.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Where the JSON string starting at `s` (after its opening quote) ends: its closing quote,
/// escapes skipped.
fn string_end(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// The span of the outermost `{…}` or `[…]` in `text`, if any.
fn json_span(text: &str) -> Option<(usize, usize)> {
    let start = text.find(['{', '['])?;
    let close = if text[start..].starts_with('{') {
        '}'
    } else {
        ']'
    };
    let end = text.rfind(close)? + 1;
    (end > start).then_some((start, end))
}

fn redact_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if is_secret_field(k) && matches!(v, Value::String(_) | Value::Number(_)) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact_json(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_json),
        // Each string on its own: e-mails and URLs inside are found word by word.
        Value::String(s) => *s = redact_words(s),
        _ => {}
    }
}

/// Token shapes anywhere in the text: `awt_…`, `whsec_…` and three-part `eyJ…` JWTs.
fn redact_shapes(text: &str) -> String {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut prev: Option<char> = None;
    'outer: while let Some(c) = rest.chars().next() {
        if !prev.is_some_and(is_tok) {
            for (prefix, shown) in [("awt_", "awt_[redacted]"), ("whsec_", "whsec_[redacted]")] {
                if let Some(after) = rest.strip_prefix(prefix) {
                    let n = after.find(|c: char| !is_tok(c)).unwrap_or(after.len());
                    if n > 0 {
                        out.push_str(shown);
                        rest = &after[n..];
                        prev = Some('x');
                        continue 'outer;
                    }
                }
            }
            if rest.starts_with("eyJ") {
                let n = rest
                    .find(|c: char| !(is_tok(c) || c == '.'))
                    .unwrap_or(rest.len());
                let candidate = rest[..n].trim_end_matches('.');
                if candidate.split('.').filter(|p| !p.is_empty()).count() == 3 {
                    out.push_str("[redacted-jwt]");
                    rest = &rest[candidate.len()..];
                    prev = Some('x');
                    continue 'outer;
                }
            }
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The span of a URL's `user:pass` in a word (between `://` and the last `@` before the path).
fn url_userinfo(word: &str) -> Option<(usize, usize)> {
    let start = word.find("://")? + 3;
    let authority_end = word[start..]
        .find(['/', '?', '#'])
        .map_or(word.len(), |i| start + i);
    let at = word[start..authority_end].rfind('@')? + start;
    Some((start, at))
}

/// Word by word: bearer credentials, URL credentials, e-mail addresses; then token shapes.
fn redact_words(text: &str) -> String {
    let text = redact_shapes(text);
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    for word in text.split_inclusive(|c: char| c.is_whitespace()) {
        let (token, ws) = match word.char_indices().last() {
            Some((i, c)) if c.is_whitespace() => (&word[..i], &word[i..]),
            _ => (word, ""),
        };
        let bare = token.trim_matches(|c: char| "\"'(),;<>[]{}".contains(c));
        let replaced = if after_bearer && !bare.is_empty() && !bare.contains("[redacted") {
            Some("[redacted]".to_owned())
        } else if let Some((from, to)) = url_userinfo(bare) {
            // scheme://user:pass@host → scheme://[redacted]@host
            Some(format!("{}[redacted]{}", &bare[..from], &bare[to..]))
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
