//! Black-box tests: each spawns the real `airwave-server` binary (see `airwave_tests::TestApp`).

// A failed unwrap is how a test step fails here, helpers included.
#![allow(clippy::unwrap_used)]

mod auth;
mod backup_bucket;
mod backups;
mod bad_input;
mod chaos;
mod config;
mod console_core;
mod creatomate;
mod dns;
mod email;
mod email_domain;
mod email_transport;
mod error_tracking;
mod exports;
mod hardening;
mod health;
mod journey;
mod ops_queues;
mod ops_stream;
mod outbound;
mod render;
mod roles;
mod schema;
mod search;
mod startup;
mod storage;
mod uploads;
mod webhooks;
