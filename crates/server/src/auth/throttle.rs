//! Login throttling, the way the OWASP Authentication Cheat Sheet describes it: attempts are
//! counted per (address, client IP) — so an attacker elsewhere cannot keep the owner locked out —
//! and per client IP across addresses — so one password tried against many accounts is limited
//! too. Each attempt is counted **before** the password is checked, in one atomic upsert, so
//! parallel guesses cannot all pass a check made before any of them is recorded; a correct
//! password clears its pair and gives its IP attempt back. Past the limit a key is locked for 1,
//! 2, 4 … up to 60 minutes. Unknown addresses are counted like known ones, so a lockout reveals
//! nothing.

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
        let ip = ip.unwrap_or("unknown");
        Self {
            account: format!("a:{email}|{ip}"),
            ip: format!("i:{ip}"),
            email: email.to_owned(),
        }
    }
}

/// Counts the attempt against both keys; refused with `429 too_many_attempts` (and
/// `Retry-After`) when either is locked or over its limit.
pub async fn reserve(state: &AppState, attempt: &Attempt, now: DateTime<Utc>) -> Result<()> {
    // Both keys are counted, whichever refuses: an attempt refused by one still counts on the
    // other, so spreading guesses over keys gains nothing.
    let by_ip = count(state, &attempt.ip, None, PER_IP, now).await?;
    let by_account = count(
        state,
        &attempt.account,
        Some(&attempt.email),
        PER_ACCOUNT_IP,
        now,
    )
    .await?;
    match by_account.or(by_ip) {
        None => Ok(()),
        Some(secs) => Err(Error::TooMany {
            code: "too_many_attempts",
            detail: format!("too many failed logins; try again in {secs} s"),
            retry_after: std::time::Duration::from_secs(secs.unsigned_abs()),
        }),
    }
}

/// A correct password: the pair starts over and the IP gets its attempt back.
pub async fn succeeded(state: &AppState, attempt: &Attempt) -> Result<()> {
    with_db!(&state.db, pool => {
        sqlx::query("DELETE FROM login_throttle WHERE key = $1")
            .bind(&attempt.account)
            .execute(pool)
            .await?;
        sqlx::query("UPDATE login_throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END WHERE key = $1")
            .bind(&attempt.ip)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The attempt was never judged (the server was too busy to check it): give both back.
pub async fn refund(state: &AppState, attempt: &Attempt) -> Result<()> {
    with_db!(&state.db, pool => {
        sqlx::query("UPDATE login_throttle SET failures = CASE WHEN failures > 0 THEN failures - 1 ELSE 0 END WHERE key = $1 OR key = $2")
            .bind(&attempt.account)
            .bind(&attempt.ip)
            .execute(pool)
            .await?;
    });
    Ok(())
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
