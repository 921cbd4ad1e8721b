//! AIrWAVE's public API: the request/response types every client shares (the server, the console,
//! the black-box tests) and a typed HTTP client.
//!
//! Naming: `XxxIn` is what a client sends, `XxxOut` what the server answers, `XxxPatch` a partial
//! update. Request types reject unknown fields so a typo is a 422, not a silently ignored field.
//! This crate depends on nothing of the server.

mod client;
mod types;

pub use client::{ApiClient, ClientError};
pub use types::*;
