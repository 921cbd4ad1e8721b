//! The audit log: one call that every feature makes for a sensitive action (logins, role and token
//! changes, operator actions). The privacy issue adds the hash chain, the query API and
//! `audit verify` on top of this table.

use crate::clock::Clock;
use crate::db::Db;
use crate::with_db;

/// Who did it.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub token_id: Option<String>,
    pub ip: Option<String>,
}

/// One audit entry.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub detail: serde_json::Value,
}

/// Records an entry in its own statement.
pub async fn record(
    db: &Db,
    clock: &dyn Clock,
    actor: &Actor,
    entry: Entry<'_>,
) -> Result<(), sqlx::Error> {
    with_db!(db, pool => crate::record_on!(pool, clock.now(), actor, entry))
}

/// Records an entry on a given connection (inside a transaction: `&mut *tx`).
#[macro_export]
macro_rules! record_on {
    ($conn:expr, $now:expr, $actor:expr, $entry:expr) => {{
        let now = $now;
        let actor: &$crate::audit::Actor = $actor;
        let entry: $crate::audit::Entry<'_> = $entry;
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor_user_id, actor_token_id, action, target_type, target_id, detail, ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($crate::ids::AuditId::new(now).as_str())
        .bind(now)
        .bind(actor.user_id.as_deref())
        .bind(actor.token_id.as_deref())
        .bind(entry.action)
        .bind(entry.target_type)
        .bind(entry.target_id)
        .bind(sqlx::types::Json(entry.detail))
        .bind(actor.ip.as_deref())
        .execute($conn)
        .await
        .map(|_| ())
    }};
}
