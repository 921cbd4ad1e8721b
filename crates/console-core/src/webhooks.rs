//! The Webhooks view's requests, checked here before anything goes to the server: ids, the
//! message filter, a recovery's time range and a disabling reason. A bad value is an `invalid`
//! error with a message the view shows.

use crate::{Error, ErrorKind};
use chrono::{DateTime, Duration, Utc};

/// A recovery reaches at most this many hours back (30 days).
pub const MAX_RECOVER_HOURS: u32 = 24 * 30;

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

/// An id of `prefix` (`whe`, `whm`, `whr`, `cli`): the prefix, `_`, letters and digits.
pub fn id<'a>(prefix: &str, what: &str, id: &'a str) -> Result<&'a str, Error> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|rest| {
            !rest.is_empty() && rest.len() <= 60 && rest.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(id)
    } else {
        Err(invalid(format!("{id:?} is not {what} ({prefix}_…)")))
    }
}

pub fn endpoint_id(v: &str) -> Result<&str, Error> {
    id("whe", "an endpoint id", v)
}

pub fn message_id(v: &str) -> Result<&str, Error> {
    id("whm", "a webhook message id", v)
}

pub fn recovery_id(v: &str) -> Result<&str, Error> {
    id("whr", "a recovery id", v)
}

/// A list's query: a status filter and the page.
pub fn message_query(
    status: Option<&str>,
    cursor: Option<&str>,
) -> Result<Vec<(&'static str, String)>, Error> {
    let mut q = vec![("limit", "100".to_owned())];
    if let Some(s) = status.map(str::trim).filter(|s| !s.is_empty()) {
        s.parse::<airwave_api::WebhookMessageStatus>()
            .map_err(|_| invalid(format!("no message is ever {s:?}")))?;
        q.push(("status", s.to_owned()));
    }
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        message_id(c).map_err(|_| invalid("that page cursor is not one the server gave"))?;
        q.push(("cursor", c.to_owned()));
    }
    Ok(q)
}

/// The start of "recover the last `hours` hours", as of `now`.
pub fn recover_since(hours: u32, now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    if !(1..=MAX_RECOVER_HOURS).contains(&hours) {
        return Err(invalid(format!(
            "recover 1 to {MAX_RECOVER_HOURS} hours back"
        )));
    }
    Ok(now - Duration::hours(i64::from(hours)))
}

/// Why an endpoint is disabled: 1 to 500 characters.
pub fn reason(r: &str) -> Result<&str, Error> {
    let r = r.trim();
    if r.is_empty() || r.chars().count() > 500 {
        return Err(invalid("say why, in 1 to 500 characters"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_filters_and_ranges_are_checked_before_a_request() {
        assert!(endpoint_id("whe_01jz0000000000000000000000").is_ok());
        for bad in ["whm_01jz", "whe_", "whe_../x", "whe_01jz 00", ""] {
            assert!(endpoint_id(bad).is_err(), "{bad}");
        }
        assert!(message_id("whm_01jz0000000000000000000000").is_ok());
        assert_eq!(
            message_query(Some("failed"), None).ok(),
            Some(vec![("limit", "100".into()), ("status", "failed".into())])
        );
        assert!(message_query(Some("exploded"), None).is_err());
        assert!(message_query(None, Some("nope")).is_err());
        let now: DateTime<Utc> = "2026-12-04T12:00:00Z".parse().unwrap_or_default();
        assert_eq!(
            recover_since(24, now).ok(),
            "2026-12-03T12:00:00Z".parse().ok()
        );
        assert!(recover_since(0, now).is_err() && recover_since(24 * 31, now).is_err());
        assert!(reason("  ").is_err() && reason("maintenance").is_ok());
    }
}
