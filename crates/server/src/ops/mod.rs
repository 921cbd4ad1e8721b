//! The operations backbone the console lives on: a background health checker that records each
//! component's results over time, and the live stream of operations events (`GET /api/ops/stream`,
//! Server-Sent Events) with a replay log in the database.
//!
//! Every event is a row of `ops_events` first; the stream reads the log, so a client resumes with
//! `Last-Event-ID` after a reconnect, a server restart or on another instance, and a slow client
//! only slows its own reads (nothing is buffered for it). Later features (alerts, deliveries,
//! backups) add their event types to the same log.

pub mod checker;
pub mod log;
pub mod routes;
