//! Bounds on the live streams: how many one user and the whole instance keep open, their
//! authorisation checked again while they run, and their end when the server stops.
//!
//! A stream checks its bearer token again every `AIRWAVE_OPS_STREAM_REAUTH_S` seconds and at
//! once when this instance revokes a credential or changes a role ([`Streams::credentials_changed`]);
//! when the token no longer authenticates, or its role may no longer watch, the stream ends. On
//! shutdown every stream ends first ([`Streams::close`]), so the server does not wait out its
//! grace period for connections that never finish; clients resume with `Last-Event-ID`.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Streams {
    per_user: usize,
    total: usize,
    open: Mutex<HashMap<String, usize>>,
    credentials_changed: Notify,
    closing: CancellationToken,
}

impl Streams {
    pub fn new(per_user: usize, total: usize) -> Self {
        Self {
            per_user,
            total,
            open: Mutex::new(HashMap::new()),
            credentials_changed: Notify::new(),
            closing: CancellationToken::new(),
        }
    }

    /// A place for one more stream of `user`, held until the guard drops; `429` over a bound.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<StreamGuard> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = open.values().sum();
        let mine = open.get(user).copied().unwrap_or(0);
        let limited = |detail: String| Error::TooMany {
            code: "too_many_streams",
            detail,
            retry_after: std::time::Duration::from_secs(5),
        };
        if mine >= self.per_user {
            return Err(limited(format!(
                "you already have {mine} streams open (at most {}); close one first",
                self.per_user
            )));
        }
        if total >= self.total {
            return Err(limited(format!(
                "this server has {total} streams open, its most; try again shortly"
            )));
        }
        *open.entry(user.to_owned()).or_default() += 1;
        Ok(StreamGuard {
            streams: self.clone(),
            user: user.to_owned(),
        })
    }

    /// This instance revoked a token or session, or changed a user's role: every stream checks
    /// its credentials now.
    pub fn credentials_changed(&self) {
        self.credentials_changed.notify_waiters();
    }

    /// Resolves when credentials changed on this instance.
    pub async fn changed(&self) {
        self.credentials_changed.notified().await;
    }

    /// Ends every stream (shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .sum()
    }
}

/// One open stream; gives its place back when dropped.
pub struct StreamGuard {
    streams: Arc<Streams>,
    user: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_per_user_and_in_total_and_given_back() {
        let s = Arc::new(Streams::new(2, 3));
        let a1 = s.admit("a").unwrap();
        let _a2 = s.admit("a").unwrap();
        assert!(matches!(
            s.admit("a"),
            Err(Error::TooMany {
                code: "too_many_streams",
                ..
            })
        ));
        let _b1 = s.admit("b").unwrap();
        assert!(s.admit("c").is_err(), "the total is reached");
        drop(a1);
        assert_eq!(s.open(), 2);
        assert!(s.admit("c").is_ok());
    }
}
