//! airwave-server: AIrWAVE's API and its background workers in one binary. Everything testable
//! lives here; `main.rs` only calls [`cli::main`]. See `docs/` and DESIGN.md for the architecture:
//! `http → features → seams → backends`.

pub mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod bench;
pub mod campaigns;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod email;
pub mod error;
pub mod events;
pub mod exports;
pub mod feature;
pub mod health;
pub mod http;
pub mod ids;
pub mod ops;
pub mod outbound;
pub mod paging;
pub mod queue;
pub mod render;
pub mod startup;
pub mod state;
pub mod storage;
pub mod supervise;
pub mod telemetry;
pub mod tracking;
pub mod webhooks;

/// The message of a caught panic (`panic!("…")` payloads are `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
