//! Outgoing webhooks, following the Standard Webhooks specification (v1). This stop brings its
//! foundations: signing and endpoint secrets (`signing.rs`); the SSRF guard every delivery goes
//! through is `crate::outbound`. Endpoints, delivery, retries, the circuit breaker, recovery and
//! the console's Webhooks view follow (issue #13).

pub mod signing;
