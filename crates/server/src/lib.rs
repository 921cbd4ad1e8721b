//! airwave-server: AIrWAVE's API and its background workers in one binary. Everything testable
//! lives here; `main.rs` only calls [`cli::main`]. See `docs/` and DESIGN.md for the architecture:
//! `http → features → seams → backends`.

pub mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
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
pub mod health;
pub mod http;
pub mod ids;
pub mod ops;
pub mod queue;
pub mod render;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
