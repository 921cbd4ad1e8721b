//! The error every feature returns. Features speak in terms of what went wrong (not found, conflict,
//! invalid input…); `http::problem` is the one place that turns this into an HTTP status and a
//! problem+json `code`.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thing does not exist, or the caller may not know that it does.
    #[error("{0}")]
    NotFound(String),
    /// Input that parsed but breaks a rule; `code` names the rule.
    #[error("{detail}")]
    Invalid { code: &'static str, detail: String },
    /// The request conflicts with the current state (duplicate, already decided, …).
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials, not enough privilege.
    #[error("{0}")]
    Forbidden(String),
    /// Something that existed and is now gone for good (an expired link).
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    /// Too many attempts; try again after the given time.
    #[error("{detail}")]
    TooMany {
        code: &'static str,
        detail: String,
        retry_after: Duration,
    },
    /// A dependency is unavailable or full right now; try again after the given time.
    #[error("{detail}")]
    Unavailable {
        code: &'static str,
        detail: String,
        retry_after: Duration,
    },
    /// A body over its limit (413).
    #[error("{detail}")]
    TooLarge { code: &'static str, detail: String },
    /// A body of a type that is not accepted, or whose bytes are not the type it declares (415).
    #[error("{detail}")]
    UnsupportedMedia { code: &'static str, detail: String },
    /// The bytes do not match the checksum sent with them (tus' 460).
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Error::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Error::NotFound(format!("{what} not found"))
    }

    pub fn forbidden() -> Self {
        Error::Forbidden("your role does not allow this".into())
    }

    /// Maps a unique-constraint violation to a conflict, leaving other errors as they are.
    pub fn on_unique(self, code: &'static str, detail: impl Into<String>) -> Self {
        match &self {
            Error::Database(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Error::conflict(code, detail)
            }
            _ => self,
        }
    }
}
