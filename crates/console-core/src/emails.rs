//! The Emails view's requests, checked here before anything goes to the server: the search
//! (recipient, template, status, time range, page), message ids and suppression entries. A bad
//! value is an `invalid` error with a message the view shows next to the field.

use crate::{Error, ErrorKind};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// At most this many hours back (a year).
pub const MAX_HOURS: u32 = 24 * 366;

/// A search of the e-mail log, as the view's filters hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EmailSearch {
    /// Part of the recipient's address.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub to: Option<String>,
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub template: Option<String>,
    /// `queued`, `sent`, `delivered`, `bounced`, `complained`, `failed` or `suppressed`.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub status: Option<String>,
    /// Only messages recorded in the last this many hours (1 to a year); none: any time.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub hours: Option<u32>,
    /// The previous page's `next_cursor`.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub cursor: Option<String>,
    /// 1 to 200 (the server's default when absent).
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub limit: Option<u32>,
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

/// A trimmed, non-empty value, or none.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl EmailSearch {
    /// The query pairs of `GET /api/ops/emails` for this search, as of `now`.
    pub fn query(&self, now: DateTime<Utc>) -> Result<Vec<(&'static str, String)>, Error> {
        let mut q = Vec::new();
        if let Some(to) = given(&self.to) {
            if to.chars().count() > 254 {
                return Err(invalid("an address is at most 254 characters"));
            }
            q.push(("to", to.to_owned()));
        }
        if let Some(t) = given(&self.template) {
            if t.len() > 64 || !t.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(invalid("a template's name is lower-case letters and _"));
            }
            q.push(("template", t.to_owned()));
        }
        if let Some(s) = given(&self.status) {
            s.parse::<airwave_api::EmailStatus>()
                .map_err(|_| invalid(format!("no message is ever {s:?}")))?;
            q.push(("status", s.to_owned()));
        }
        if let Some(h) = self.hours {
            if !(1..=MAX_HOURS).contains(&h) {
                return Err(invalid(format!("the time range is 1 to {MAX_HOURS} hours")));
            }
            let since = now - Duration::hours(i64::from(h));
            q.push(("since", since.to_rfc3339_opts(SecondsFormat::Secs, true)));
        }
        if let Some(c) = given(&self.cursor) {
            cursor(c)?;
            q.push(("cursor", c.to_owned()));
        }
        if let Some(l) = self.limit {
            if !(1..=200).contains(&l) {
                return Err(invalid("a page is 1 to 200 messages"));
            }
            q.push(("limit", l.to_string()));
        }
        Ok(q)
    }
}

fn cursor(c: &str) -> Result<(), Error> {
    if c.len() > 512 || !c.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("that page cursor is not one the server gave"));
    }
    Ok(())
}

/// A message id from the log (`msg_` and letters or digits).
pub fn message_id(id: &str) -> Result<&str, Error> {
    let ok = id.strip_prefix("msg_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 60 && rest.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if ok {
        Ok(id)
    } else {
        Err(invalid(format!("{id:?} is not a message id (msg_…)")))
    }
}

/// A template's name.
pub fn template_name(name: &str) -> Result<&str, Error> {
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
    {
        return Err(invalid(format!("{name:?} is not a template's name")));
    }
    Ok(name)
}

/// An address for the suppression list (the server checks it fully).
pub fn address(a: &str) -> Result<&str, Error> {
    let a = a.trim();
    if a.is_empty()
        || a.chars().count() > 254
        || !a.contains('@')
        || a.chars().any(char::is_whitespace)
    {
        return Err(invalid("enter one e-mail address"));
    }
    Ok(a)
}

/// A reason or note that is audited: 1 to 500 characters.
pub fn reason(r: &str) -> Result<&str, Error> {
    let r = r.trim();
    if r.is_empty() || r.chars().count() > 500 {
        return Err(invalid("say why, in 1 to 500 characters"));
    }
    Ok(r)
}

/// The suppression list's query: part of an address, and the page.
pub fn suppression_query(
    address: Option<&str>,
    cursor_value: Option<&str>,
) -> Result<Vec<(&'static str, String)>, Error> {
    let mut q = Vec::new();
    if let Some(a) = address.map(str::trim).filter(|a| !a.is_empty()) {
        if a.chars().count() > 254 {
            return Err(invalid("an address is at most 254 characters"));
        }
        q.push(("address", a.to_owned()));
    }
    if let Some(c) = cursor_value.filter(|c| !c.is_empty()) {
        cursor(c)?;
        q.push(("cursor", c.to_owned()));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-02T12:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn a_search_becomes_the_servers_filters() {
        let s = EmailSearch {
            to: Some("  ada@example.com ".into()),
            template: Some("password_reset".into()),
            status: Some("failed".into()),
            hours: Some(24),
            cursor: None,
            limit: Some(50),
        };
        assert_eq!(
            s.query(now()).ok(),
            Some(vec![
                ("to", "ada@example.com".into()),
                ("template", "password_reset".into()),
                ("status", "failed".into()),
                ("since", "2026-12-01T12:00:00Z".into()),
                ("limit", "50".into()),
            ])
        );
        assert_eq!(EmailSearch::default().query(now()).ok(), Some(vec![]));
        let blank = EmailSearch {
            to: Some("   ".into()),
            ..Default::default()
        };
        assert_eq!(
            blank.query(now()).ok(),
            Some(vec![]),
            "blank filters are no filters"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_a_reason() {
        let bad = [
            EmailSearch {
                status: Some("lost".into()),
                ..Default::default()
            },
            EmailSearch {
                template: Some("../x".into()),
                ..Default::default()
            },
            EmailSearch {
                hours: Some(0),
                ..Default::default()
            },
            EmailSearch {
                hours: Some(MAX_HOURS + 1),
                ..Default::default()
            },
            EmailSearch {
                limit: Some(201),
                ..Default::default()
            },
            EmailSearch {
                cursor: Some("a b".into()),
                ..Default::default()
            },
            EmailSearch {
                to: Some("a".repeat(255)),
                ..Default::default()
            },
        ];
        for s in bad {
            let e = s.query(now()).err();
            assert_eq!(e.map(|e| e.kind), Some(ErrorKind::Invalid), "{s:?}");
        }
    }

    #[test]
    fn ids_names_addresses_and_reasons_are_checked() {
        assert!(message_id("msg_01abc").is_ok());
        for id in ["", "msg_", "job_01abc", "msg_../x", "msg_a/b"] {
            assert!(message_id(id).is_err(), "{id}");
        }
        assert!(template_name("welcome").is_ok());
        assert!(template_name("Welcome").is_err());
        assert_eq!(address(" ada@example.com ").ok(), Some("ada@example.com"));
        assert!(address("ada").is_err());
        assert!(address("a b@example.com").is_err());
        assert!(reason("  ").is_err());
        assert!(reason(&"x".repeat(501)).is_err());
        assert_eq!(reason(" hard bounce ").ok(), Some("hard bounce"));
        assert_eq!(
            suppression_query(Some(" bob "), Some("c1")).ok(),
            Some(vec![("address", "bob".into()), ("cursor", "c1".into())])
        );
    }
}
