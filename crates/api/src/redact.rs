//! Scrubbing text before it is logged or reported (the console's logs and error reports, the
//! server's Sentry events): API tokens, webhook secrets, JWTs, bearer credentials, URL
//! credentials, e-mail addresses, and in JSON every value of a field named like a secret.

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
}
