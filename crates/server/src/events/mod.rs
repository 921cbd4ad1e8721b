//! The transactional outbox and its consumers. A domain change and the event announcing it are
//! written in one transaction, so nothing is announced that was not committed and nothing
//! committed is lost. Features register [`Consumer`]s with the event types they take; the
//! [`dispatcher`] hands every committed event to each of them (see its doc for the guarantees),
//! reading the outbox in commit order ([`outbox`]).

/// Event type names. Webhook subscribers see these, so they never change meaning.
pub mod types {
    pub const USER_REGISTERED: &str = "user.registered";
    pub const CLIENT_CREATED: &str = "client.created";
    pub const ASSET_CREATED: &str = "asset.created";
    pub const ASSET_UPDATED: &str = "asset.updated";
    pub const ASSET_DELETED: &str = "asset.deleted";
    pub const CAMPAIGN_CREATED: &str = "campaign.created";
    pub const MATRIX_CREATED: &str = "matrix.created";
    pub const EXECUTION_CREATED: &str = "execution.created";
    pub const APPROVAL_REQUESTED: &str = "approval.requested";
    pub const APPROVAL_RECEIVED: &str = "approval.received";
    pub const RENDER_STARTED: &str = "render.started";
    pub const RENDER_COMPLETED: &str = "render.completed";
    pub const RENDER_FAILED: &str = "render.failed";
    pub const JOB_DEAD: &str = "job.dead";
}

pub mod dispatcher;
pub mod health;
pub mod outbox;
pub mod routes;

pub use dispatcher::{Consumer, Delivery, DeliveryError, Dispatcher};
pub use outbox::{Event, Position};

/// Inserts an event into the outbox on the given connection (a transaction's, as a rule).
/// `$conn` is `&mut *tx`; `$payload` is a `serde_json::Value`.
#[macro_export]
macro_rules! emit_event {
    ($conn:expr, $now:expr, $type:expr, $subject:expr, $payload:expr) => {
        sqlx::query("INSERT INTO events (id, type, subject_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind($crate::ids::EventId::new($now).as_str())
            .bind($type)
            .bind($subject)
            .bind(sqlx::types::Json($payload))
            .bind($now)
            .execute($conn)
            .await
    };
}
