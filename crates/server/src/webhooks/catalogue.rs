//! The event catalogue: what a client's endpoint can subscribe to, the JSON Schema of each
//! payload's `data`, and the body an outbox event becomes — `{type, timestamp, data}` (the
//! Standard Webhooks shape), serialised once and signed over those exact bytes.

use crate::events::types;
use airwave_api::WebhookEventTypeOut;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The test event `POST …/endpoints/{id}/test` sends.
pub const TEST: &str = "webhook.test";

/// The outbox events delivered to endpoints.
pub const DELIVERED: &[&str] = &[
    types::RENDER_STARTED,
    types::RENDER_COMPLETED,
    types::RENDER_FAILED,
    types::APPROVAL_RECEIVED,
    types::EXPORT_READY,
];

fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": properties,
    })
}

fn id(prefix: &str) -> Value {
    json!({"type": "string", "pattern": format!("^{prefix}_[0-9a-z]{{26}}$")})
}

/// Every type an endpoint can subscribe to, with its payload's schema.
pub fn catalogue() -> Vec<WebhookEventTypeOut> {
    let execution = || {
        json!({
            "execution_id": id("exe"), "client_id": id("cli"), "campaign_id": id("cmp"),
        })
    };
    let with = |mut base: Value, extra: Value| {
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        base
    };
    let entry = |name: &str, description: &str, schema: Value| WebhookEventTypeOut {
        name: name.to_owned(),
        description: description.to_owned(),
        schema,
    };
    vec![
        entry(
            types::RENDER_STARTED,
            "A render of an execution started with a provider.",
            object(
                &[
                    "execution_id",
                    "client_id",
                    "campaign_id",
                    "render_id",
                    "provider",
                ],
                with(
                    execution(),
                    json!({"render_id": id("rnd"), "provider": {"type": "string"}}),
                ),
            ),
        ),
        entry(
            types::RENDER_COMPLETED,
            "An execution's video is rendered and stored.",
            object(
                &["execution_id", "client_id", "campaign_id", "bytes"],
                with(
                    execution(),
                    json!({"bytes": {"type": "integer", "minimum": 0}}),
                ),
            ),
        ),
        entry(
            types::RENDER_FAILED,
            "An execution's render failed for good.",
            object(
                &["execution_id", "client_id", "campaign_id", "error"],
                with(execution(), json!({"error": {"type": "string"}})),
            ),
        ),
        entry(
            types::APPROVAL_RECEIVED,
            "A reviewer approved a render or asked for changes.",
            object(
                &["approval_id", "execution_id", "client_id", "decision"],
                json!({
                    "approval_id": id("apr"), "execution_id": id("exe"), "client_id": id("cli"),
                    "decision": {"type": "string", "enum": ["approved", "rejected"]},
                }),
            ),
        ),
        entry(
            types::EXPORT_READY,
            "A campaign export (a zip of its approved renders) is ready to download.",
            object(
                &[
                    "export_id",
                    "campaign_id",
                    "client_id",
                    "renders",
                    "size_bytes",
                    "sha256",
                ],
                json!({
                    "export_id": id("exp"), "campaign_id": id("cmp"), "client_id": id("cli"),
                    "renders": {"type": "integer", "minimum": 0},
                    "size_bytes": {"type": "integer", "minimum": 0},
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                }),
            ),
        ),
        entry(
            TEST,
            "Sent by `POST …/endpoints/{id}/test` to check an endpoint.",
            object(
                &["endpoint_id", "message"],
                json!({"endpoint_id": id("whe"), "message": {"type": "string"}}),
            ),
        ),
    ]
}

/// Whether an endpoint may subscribe to `name`.
pub fn known(name: &str) -> bool {
    DELIVERED.contains(&name) || name == TEST
}

/// The body of one message: `{"type", "timestamp", "data"}`.
pub fn body(event_type: &str, at: DateTime<Utc>, data: &Value) -> String {
    json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// The `data` an outbox event's payload becomes (only the catalogue's fields: internal ones,
/// such as a render's storage key, stay inside), given the client and campaign it belongs to.
pub fn data(
    event_type: &str,
    payload: &Value,
    client_id: &str,
    campaign_id: Option<&str>,
) -> Value {
    let keep: &[&str] = match event_type {
        types::RENDER_STARTED => &["execution_id", "render_id", "provider"],
        types::RENDER_COMPLETED => &["execution_id", "bytes"],
        types::RENDER_FAILED => &["execution_id", "error"],
        types::APPROVAL_RECEIVED => &["approval_id", "execution_id", "decision"],
        types::EXPORT_READY => &[
            "export_id",
            "campaign_id",
            "renders",
            "size_bytes",
            "sha256",
        ],
        _ => &[],
    };
    let mut out = serde_json::Map::new();
    for k in keep {
        if let Some(v) = payload.get(*k) {
            out.insert((*k).to_owned(), v.clone());
        }
    }
    out.insert("client_id".into(), json!(client_id));
    if let Some(c) = campaign_id {
        out.entry("campaign_id").or_insert(json!(c));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_delivered_type_is_in_the_catalogue_with_a_schema() {
        let names: Vec<String> = catalogue().into_iter().map(|t| t.name).collect();
        for t in DELIVERED {
            assert!(names.iter().any(|n| n == t), "{t}");
        }
        assert!(names.iter().any(|n| n == TEST));
        let b = body("render.completed", Utc::now(), &json!({"bytes": 1}));
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["type"], "render.completed");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn internal_fields_stay_inside() {
        let d = data(
            types::RENDER_COMPLETED,
            &json!({"execution_id": "exe_1", "output_key": "clients/x/renders/y", "bytes": 5}),
            "cli_1",
            Some("cmp_1"),
        );
        assert_eq!(
            d,
            json!({"execution_id": "exe_1", "bytes": 5, "client_id": "cli_1", "campaign_id": "cmp_1"})
        );
    }
}
