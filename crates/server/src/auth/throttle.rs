//! Login throttling, the way the OWASP Authentication Cheat Sheet describes it: attempts are
//! counted per (address, client IP) — so an attacker elsewhere cannot keep the owner locked out —
//! and failures per client IP across addresses — so one password tried against many accounts is
//! limited too. A pair's attempt is counted **before** the password is checked, in one atomic
//! upsert, so parallel guesses cannot all pass a check made before any of them is recorded; a
//! correct password clears its pair. An IP's failures are counted once judged and never given
//! back (a success of the attacker's own account must not buy another guess elsewhere); a locked
//! IP is refused before anything is checked. IPv6 clients are keyed by their /64, which one
//! machine usually holds whole. Past a limit a key is locked for 1, 2, 4 … up to 60 minutes.
//! Unknown addresses are counted like known ones, so a lockout reveals nothing.

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::with_db;
use chrono::{DateTime, Duration, Utc};

/// Attempts per (address, client IP) in a window before the pair is locked.
pub const PER_ACCOUNT_IP: i32 = 5;
/// Failed attempts per client IP, over every address, in a window before the IP is locked.
pub const PER_IP: i32 = 30;
/// The window attempts are counted in.
pub const WINDOW_MINUTES: i64 = 15;

/// The throttle keys of one login attempt.
pub struct Attempt {
    account: String,
    ip: String,
    email: String,
}

impl Attempt {
    pub fn new(email: &str, ip: Option<&str>) -> Self {
        let ip = client_key(ip.unwrap_or("unknown"));
        let ip = ip.as_str();
        Self {
            account: format!("a:{email}|{ip}"),
            ip: format!("i:{ip}"),
            email: email.to_owned(),
        }
    }
}

/// The key of a client address: IPv4 as it is, IPv6 by its /64.
fn client_key(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| ip.to_owned(), |v4| v4.to_string()),
        _ => ip.to_owned(),
    }
}

/// Counts the attempt against both keys; refused with `429 too_many_attempts` (and
/// `Retry-After`) when either is locked or over its limit.
pub async fn reserve(state: &AppState, attempt: &Attempt, now: DateTime<Utc>) -> Result<()> {
    let by_ip = ip_locked(state, &attempt.ip, now).await?;
    let by_account = match by_ip {
        Some(_) => None,
        None => {
            count(
                state,
                &attempt.account,
                Some(&attempt.email),
                PER_ACCOUNT_IP,
                now,
            )
            .await?
        }
    };
    match by_ip.or(by_account) {
        None => Ok(()),
        Some(secs) => Err(Error::TooMany {
            code: "too_many_attempts",
            detail: format!("too many failed logins; try again in {secs} s"),
            retry_after: std::time::Duration::from_secs(secs.unsigned_abs()),
        }),
    }
}

/// A correct password: the pair starts over (the IP's failures stay).
pub async fn succeeded(state: &AppState, attempt: &Attempt) -> Result<()> {
    with_db!(&state.db, pool => {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(&attempt.account)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A wrong password (or an unknown address): the client's failures go up, and past
/// [`PER_IP`] the client is locked.
pub async fn failed(state: &AppState, attempt: &Attempt, now: DateTime<Utc>) -> Result<()> {
    // The `PER_IP`th failure locks the client, so its next attempt is refused unchecked.
    count(state, &attempt.ip, None, PER_IP - 1, now).await?;
    Ok(())
}

/// The attempt was never judged (the server was too busy to check it): the pair gets it back.
pub async fn refund(state: &AppState, attempt: &Attempt) -> Result<()> {
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE login_throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END WHERE key = $1")
            .bind(&attempt.account)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Seconds left on the lock of a client key, if it is locked.
async fn ip_locked(state: &AppState, key: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
    let until: Option<Option<DateTime<Utc>>> = with_db!(&state.db, pool => {
        sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?
    });
    Ok(until
        .flatten()
        .filter(|t| *t > now)
        .map(|t| (t - now).num_seconds().max(1)))
}

/// Counts one attempt on `key`; the seconds left on its lock if it is locked or now over `limit`.
async fn count(
    state: &AppState,
    key: &str,
    email: Option<&str>,
    limit: i32,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    let window_start = now - Duration::minutes(WINDOW_MINUTES);
    // A window that has passed, with no lock in force, starts over.
    let (failures, locked_until): (i32, Option<DateTime<Utc>>) = with_db!(&state.db, pool => {
        sqlx::query_as(
            "INSERT INTO login_throttle (key, email, failures, window_start) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key) DO UPDATE SET
               failures = CASE WHEN login_throttle.window_start < $4
                                AND (login_throttle.locked_until IS NULL OR login_throttle.locked_until <= $3)
                               THEN 1 ELSE login_throttle.failures + 1 END,
               window_start = CASE WHEN login_throttle.window_start < $4
                                AND (login_throttle.locked_until IS NULL OR login_throttle.locked_until <= $3)
                               THEN $3 ELSE login_throttle.window_start END
             RETURNING failures, locked_until",
        )
        .bind(key)
        .bind(email)
        .bind(now)
        .bind(window_start)
        .fetch_one(pool)
        .await?
    });
    if let Some(until) = locked_until.filter(|t| *t > now) {
        return Ok(Some((until - now).num_seconds().max(1)));
    }
    if failures <= limit {
        return Ok(None);
    }
    let minutes = (1i64 << (failures - limit - 1).clamp(0, 6)).min(60);
    let until = now + Duration::minutes(minutes);
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1")
            .bind(key)
            .bind(until)
            .execute(pool)
            .await?;
    });
    Ok(Some(minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(client_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(client_key("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_eq!(client_key("::ffff:10.0.0.7"), "10.0.0.7");
        assert_eq!(client_key("10.0.0.7"), "10.0.0.7");
        assert_eq!(client_key("unknown"), "unknown");
    }
}
