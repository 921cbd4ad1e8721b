//! Black-box tests: each spawns the real `airwave-server` binary (see `airwave_tests::TestApp`).

mod auth;
mod bad_input;
mod config;
mod health;
mod journey;
mod roles;
mod schema;
mod search;
