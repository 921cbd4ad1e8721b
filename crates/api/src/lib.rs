//! AIrWAVE's public API: the request/response types every client shares (the server, the console,
//! the black-box tests) and a typed HTTP client.
//!
//! Naming: `XxxIn` is what a client sends, `XxxOut` what the server answers, `XxxPatch` a partial
//! update. Request types reject unknown fields so a typo is a 422, not a silently ignored field.
//! This crate depends on nothing of the server.

mod client;
pub mod redact;
mod types;

pub use client::{
    excerpt, ApiClient, ClientError, CONNECT_TIMEOUT, ERROR_BODY_MAX, REQUEST_TIMEOUT,
};
pub use types::*;

/// The TypeScript side of these types, for the console's UI: `ui/src/lib/api.gen.ts` is
/// generated from them and a stale file fails this test (`AIRWAVE_UPDATE_TS=1` rewrites it).
#[cfg(test)]
mod typescript {
    use super::*;
    use ts_rs::{Config, TS};

    fn render() -> String {
        let cfg = Config::default();
        let decls = [
            Problem::decl(&cfg),
            Role::decl(&cfg),
            UserOut::decl(&cfg),
            HealthStatus::decl(&cfg),
            HealthCheckOut::decl(&cfg),
            HealthOut::decl(&cfg),
            JobStateOut::decl(&cfg),
            QueueCountsOut::decl(&cfg),
            QueueRatesOut::decl(&cfg),
            QueueOut::decl(&cfg),
            PercentilesOut::decl(&cfg),
            QueueMinuteOut::decl(&cfg),
            QueueMetricsOut::decl(&cfg),
            HealthChangedEvent::decl(&cfg),
            QueueStatsItem::decl(&cfg),
            QueueStatsEvent::decl(&cfg),
            StreamGapEvent::decl(&cfg),
            HealthPointOut::decl(&cfg),
            HealthHistoryOut::decl(&cfg),
            EmailTemplateOut::decl(&cfg),
            EmailStatus::decl(&cfg),
            EmailOut::decl(&cfg),
            EmailAttemptOut::decl(&cfg),
            EmailDetailOut::decl(&cfg),
            EmailResendIn::decl(&cfg),
            SuppressionReason::decl(&cfg),
            SuppressionOut::decl(&cfg),
            SuppressionIn::decl(&cfg),
            EmailChangedEvent::decl(&cfg),
            Page::<()>::decl(&cfg),
            JobOut::decl(&cfg),
            AttemptOut::decl(&cfg),
            JobDetailOut::decl(&cfg),
            BackupStatus::decl(&cfg),
            DrillStatus::decl(&cfg),
            TableStatOut::decl(&cfg),
            DrillOut::decl(&cfg),
            BackupOut::decl(&cfg),
            SlowQuerySource::decl(&cfg),
            SlowQueryOut::decl(&cfg),
            SlowQueriesOut::decl(&cfg),
            WebhookCircuit::decl(&cfg),
            WebhookMessageStatus::decl(&cfg),
            WebhookErrorClass::decl(&cfg),
            WebhookEndpointIn::decl(&cfg),
            WebhookEndpointPatch::decl(&cfg),
            WebhookEndpointOut::decl(&cfg),
            WebhookEndpointCreatedOut::decl(&cfg),
            WebhookRotateIn::decl(&cfg),
            WebhookSecretOut::decl(&cfg),
            WebhookMessageOut::decl(&cfg),
            WebhookAttemptOut::decl(&cfg),
            WebhookMessageDetailOut::decl(&cfg),
            WebhookRecoverIn::decl(&cfg),
            WebhookRecoveryStatus::decl(&cfg),
            WebhookRecoveryOut::decl(&cfg),
            WebhookRecoverOut::decl(&cfg),
            WebhookEventTypeOut::decl(&cfg),
            WebhookChangedEvent::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from crates/api by its `typescript` unit test: do not edit.\n\
             // Regenerate with `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-api typescript`.\n\
             // 64-bit integers are JSON numbers here (every count and id stays below 2^53).\n\n\
             export type JsonValue = number | string | boolean | null | Array<JsonValue> | \
             { [key in string]?: JsonValue };\n\n",
        );
        for d in decls {
            out.push_str("export ");
            out.push_str(&d.replace("bigint", "number"));
            out.push_str("\n\n");
        }
        out.trim_end().to_string() + "\n"
    }

    #[test]
    fn typescript_bindings_are_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/lib/api.gen.ts");
        let fresh = render();
        if std::env::var_os("AIRWAVE_UPDATE_TS").is_some() {
            std::fs::write(&path, &fresh).expect("write api.gen.ts");
            return;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/lib/api.gen.ts is stale: run `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-api typescript`"
        );
    }
}
