//! The API contract: every response a black-box test receives is checked against the server's
//! own OpenAPI document — the status is listed for its operation (or falls under `default`), the
//! content type is one the document names for it, and a JSON body validates against the schema
//! (with the `jsonschema` crate, JSON Schema 2020-12 as OpenAPI 3.1 uses). The server writes each
//! response down (`AIRWAVE_RECORD_RESPONSES`); `TestApp`'s drop reads them back.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The file in an app's data dir the server records its responses to.
pub const RECORDING: &str = "responses.jsonl";

static DOCUMENT: OnceLock<Value> = OnceLock::new();

/// Fetches the OpenAPI document once per test process (every server serves the same).
pub async fn load_document(base: &url::Url) -> anyhow::Result<()> {
    if DOCUMENT.get().is_none() {
        let doc: Value = reqwest::get(base.join("/api/openapi.json")?)
            .await?
            .json()
            .await?;
        let _ = DOCUMENT.set(doc);
    }
    Ok(())
}

/// A content type without its parameters (`text/html; charset=utf-8` → `text/html`).
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Every recorded response that differs from the document, described.
pub fn check(recording: &std::path::Path) -> Vec<String> {
    let Some(doc) = DOCUMENT.get() else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string(recording) else {
        return Vec::new();
    };
    let mut validators: HashMap<String, jsonschema::Validator> = HashMap::new();
    let mut drift = Vec::new();
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<Value>(line) else {
            continue; // a line cut short by a killed server
        };
        // Unrouted requests (404 fallbacks, 405s) have no operation to compare with.
        let Some(route) = r["route"].as_str() else {
            continue;
        };
        let method = r["method"].as_str().unwrap_or("");
        let status = r["status"].as_u64().unwrap_or(0).to_string();
        let content_type = r["content_type"].as_str().unwrap_or("");
        let what = format!(
            "{} {route} → {status} ({content_type})",
            method.to_uppercase()
        );
        let Some(op) = doc["paths"][route].get(method) else {
            if status == "405" || method == "head" || method == "options" {
                continue; // a method the route does not have: no operation to compare with
            }
            drift.push(format!("{what}: the operation is not in the document"));
            continue;
        };
        let range = format!("{}XX", &status[..1]);
        let Some(resp) = op["responses"]
            .get(&status)
            .or_else(|| op["responses"].get(&range))
            .or_else(|| op["responses"].get("default"))
        else {
            drift.push(format!("{what}: status not documented"));
            continue;
        };
        let body = &r["body"];
        let content = resp["content"].as_object();
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            if !content_type.is_empty() && body["raw"].as_str() != Some("") {
                drift.push(format!("{what}: documented without a body, sent one"));
            }
            continue;
        };
        // The exact media type, else a documented range (`video/*`, `*/*`: files of any type).
        let exact = media_type(content_type);
        let range = format!("{}/*", exact.split('/').next().unwrap_or(""));
        let Some(media) = content
            .get(exact)
            .or_else(|| content.get(&range))
            .or_else(|| content.get("*/*"))
        else {
            let listed: Vec<&String> = content.keys().collect();
            drift.push(format!(
                "{what}: content type not documented (documented: {listed:?})"
            ));
            continue;
        };
        let Some(schema) = media.get("schema") else {
            continue;
        };
        if body.is_null() {
            continue; // not JSON: nothing to validate
        }
        let Some(json) = body.get("json").filter(|j| !j.is_null()) else {
            drift.push(format!("{what}: the body is not JSON: {}", body["raw"]));
            continue;
        };
        let key = schema.to_string();
        if !validators.contains_key(&key) {
            let root = serde_json::json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": doc["components"],
                "allOf": [schema],
            });
            match jsonschema::validator_for(&root) {
                Ok(v) => {
                    validators.insert(key.clone(), v);
                }
                Err(e) => {
                    drift.push(format!(
                        "{what}: the documented schema does not compile: {e}"
                    ));
                    continue;
                }
            }
        }
        let errors: Vec<String> = validators[&key]
            .iter_errors(json)
            .take(3)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if !errors.is_empty() {
            drift.push(format!("{what}: {}", errors.join("; ")));
        }
    }
    drift.sort();
    drift.dedup();
    drift
}
