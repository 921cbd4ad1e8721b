//! Domain values and their rules: what a valid e-mail address, password or name is. No IO, and
//! nothing of ours imported but ids. A value here can only be built by parsing it.

use crate::error::Error;

/// A normalised (trimmed, lower-case) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let s = raw.trim().to_lowercase();
        let bad = || {
            Error::invalid(
                "invalid_email",
                format!(
                    "`{}` is not an e-mail address",
                    raw.chars().take(80).collect::<String>()
                ),
            )
        };
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        // No display names, quoting or lists: what a mail transport takes as exactly this one
        // address (`x<victim@corp>` would otherwise reach `victim@corp` past the suppression list).
        if s.chars().any(|c| {
            matches!(
                c,
                '<' | '>' | ',' | '"' | '(' | ')' | ';' | ':' | '[' | ']' | '\\'
            )
        }) || s.parse::<lettre::Address>().is_err()
        {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the policy: 10 to 256 characters, not the e-mail address.
pub struct Password(String);

impl Password {
    pub const MIN: usize = 10;
    pub const MAX: usize = 256;

    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, Error> {
        let n = raw.chars().count();
        if n < Self::MIN {
            return Err(Error::invalid(
                "weak_password",
                format!("the password must have at least {} characters", Self::MIN),
            ));
        }
        if n > Self::MAX {
            return Err(Error::invalid(
                "weak_password",
                format!("the password must have at most {} characters", Self::MAX),
            ));
        }
        if email.is_some_and(|e| raw.trim().eq_ignore_ascii_case(e.as_str())) {
            return Err(Error::invalid(
                "weak_password",
                "the password must not be the e-mail address",
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A human-readable name (of a user, client, campaign, asset…): trimmed, 1 to `max` characters,
/// no control characters.
pub fn name(field: &str, raw: &str, max: usize) -> Result<String, Error> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::invalid(
            "validation_failed",
            format!("`{field}` must not be empty"),
        ));
    }
    if s.chars().count() > max {
        return Err(Error::invalid(
            "validation_failed",
            format!("`{field}` must have at most {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(
            "validation_failed",
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// Optional free text: trimmed, at most `max` characters; blank becomes `None`.
pub fn optional_text(field: &str, raw: Option<&str>, max: usize) -> Result<Option<String>, Error> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().count() > max => Err(Error::invalid(
            "validation_failed",
            format!("`{field}` must have at most {max} characters"),
        )),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

/// A JSON object given by a client: bounded in size so one field cannot hold megabytes.
pub fn json_object(
    field: &str,
    value: &serde_json::Map<String, serde_json::Value>,
    max_bytes: usize,
) -> Result<String, Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::Internal(e.into()))?;
    if text.len() > max_bytes {
        return Err(Error::invalid(
            "validation_failed",
            format!("`{field}` must be at most {max_bytes} bytes of JSON"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for raw in [
            "x<victim@corp.com>",
            "a,b@example.com",
            "\"q\"@example.com",
            "a@b@example.com",
        ] {
            assert!(Email::parse(raw).is_err(), "{raw}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@.com",
            "ada@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_passwords_and_the_email_itself_are_rejected() {
        let e = Email::parse("ada@example.com").unwrap();
        assert!(Password::parse("short", Some(&e)).is_err());
        assert!(Password::parse("ADA@example.com", Some(&e)).is_err());
        assert!(Password::parse(&"x".repeat(257), Some(&e)).is_err());
        assert!(Password::parse("correct horse battery", Some(&e)).is_ok());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  Acme  ", 10).unwrap(), "Acme");
        assert!(name("name", "   ", 10).is_err());
        assert!(name("name", "abcdefghijk", 10).is_err());
        assert!(name("name", "a\u{0}b", 10).is_err());
    }
}
