//! The console's one error type. Tauri commands return `Result<T, Error>`, serialised as
//! `{kind, message}` so the UI can branch on `kind` and show `message`. Messages never carry a
//! token (see `secrets::redact`).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ErrorKind {
    /// Wrong email/password, or a revoked/expired token: log in again.
    Unauthenticated,
    /// The role does not allow it.
    Forbidden,
    /// The server could not be reached or did not answer in time.
    Offline,
    /// No OS keychain (Secret Service / Keychain / Credential Manager) is available.
    NoKeychain,
    /// Bad input from the user (a malformed URL, an unknown profile), or a request the server
    /// refused as such (any other 4xx; its `code` says which).
    Invalid,
    /// Anything else the server said (its problem's detail is the message).
    Server,
    /// A local file could not be read or written.
    Io,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The server's stable problem code (e.g. `address_suppressed`), when it answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub code: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
        }
    }

    fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }
}

impl From<airwave_api::ClientError> for Error {
    fn from(e: airwave_api::ClientError) -> Self {
        use airwave_api::ClientError as C;
        match &e {
            C::Api(p) if p.status == 401 => {
                Error::new(ErrorKind::Unauthenticated, p.detail.clone()).with_code(&p.code)
            }
            C::Api(p) if p.status == 403 => {
                Error::new(ErrorKind::Forbidden, p.detail.clone()).with_code(&p.code)
            }
            C::Api(p) if (400..500).contains(&p.status) => {
                Error::new(ErrorKind::Invalid, p.detail.clone()).with_code(&p.code)
            }
            C::Api(p) => Error::new(ErrorKind::Server, p.detail.clone()).with_code(&p.code),
            C::Http(h) if h.is_connect() || h.is_timeout() => Error::new(
                ErrorKind::Offline,
                "the server could not be reached; check the profile's URL and your network",
            ),
            _ => Error::new(ErrorKind::Server, crate::secrets::redact(&e.to_string())),
        }
    }
}
