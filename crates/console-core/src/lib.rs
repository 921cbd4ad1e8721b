//! The desktop console's core: all of its logic, with no Tauri dependency, so it is tested
//! headless against a real `airwave-server`. The Tauri shell (`src-tauri/`) only forwards typed
//! commands and events to it.
//!
//! - [`profiles`]: server profiles (name, URL, colour) in a JSON file — never a token;
//! - [`secrets`]: where API tokens live: the OS keychain in the app, memory in unit tests;
//! - [`session`]: log in (email/password → a role-scoped API token in the keychain), log out
//!   (revoke on the server, delete from the keychain);
//! - [`stream`]: the live operations stream, resumed with `Last-Event-ID`, reconnecting with backoff;
//! - [`alerts`]: which health changes become a native notification (quiet hours, de-duplication);
//! - [`charts`]: time series drawn to SVG with plotters, in light and dark themes;
//! - [`local`]: the embedded default — a sidecar `airwave-server` with an admin made for it.

pub mod alerts;
pub mod charts;
pub mod error;
pub mod local;
pub mod profiles;
pub mod secrets;
pub mod session;
pub mod stream;

pub use error::{Error, ErrorKind};
