//! The shell's commands through Tauri's IPC on the mock runtime (headless, no webview): the typed
//! `{kind, message}` errors the UI branches on, and that nothing the webview receives carries a
//! token.

// A failed unwrap is how a test step fails here, helpers included.
#![allow(clippy::unwrap_used)]

use airwave_console::{configure, Console};
use airwave_console_core::secrets::{MemoryStore, SecretStore};
use serde_json::{json, Value};
use std::sync::Arc;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{get_ipc_response, mock_builder, mock_context, noop_assets, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::WebviewWindowBuilder;

/// A store the test can look into after handing it to the console.
struct Shared(Arc<MemoryStore>);

impl SecretStore for Shared {
    fn get(&self, p: &str) -> Result<Option<String>, airwave_console_core::Error> {
        self.0.get(p)
    }
    fn set(&self, p: &str, t: &str) -> Result<(), airwave_console_core::Error> {
        self.0.set(p, t)
    }
    fn delete(&self, p: &str) -> Result<(), airwave_console_core::Error> {
        self.0.delete(p)
    }
}

fn invoke(
    w: &tauri::WebviewWindow<tauri::test::MockRuntime>,
    cmd: &str,
    args: Value,
) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            // The app's own origin on Linux and macOS (remote origins may not call commands).
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

#[test]
fn commands_answer_typed_results_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    // The token of the profile added below, filed under its origin-bound keychain entry.
    let key = "production@https://ops.example.com";
    store.set(key, "awt_secret_token_value").unwrap();
    let console = Console::new(
        dir.path().to_owned(),
        std::sync::Arc::new(Shared(store.clone())),
    )
    .unwrap();
    let app = configure(mock_builder(), console)
        .build(mock_context(noop_assets()))
        .unwrap();
    let w = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();

    let empty = invoke(&w, "profiles", json!({})).unwrap();
    assert_eq!(empty, json!({"profiles": [], "active": null}));

    let added = invoke(
        &w,
        "add_profile",
        json!({"name": "Production", "url": "https://ops.example.com", "colour": null, "production": true}),
    )
    .unwrap();
    assert_eq!(added["colour"], "#dc2626", "production is red");
    invoke(&w, "select_profile", json!({"id": "production"})).unwrap();
    let listed = invoke(&w, "profiles", json!({})).unwrap();
    assert_eq!(listed["active"], "production");
    assert!(
        !listed.to_string().contains("awt_"),
        "no token reaches the webview: {listed}"
    );

    let bad = invoke(
        &w,
        "add_profile",
        json!({"name": "X", "url": "ftp://nope", "colour": null, "production": false}),
    )
    .unwrap_err();
    assert_eq!(bad["kind"], "invalid", "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("http"));

    let bad_queue = invoke(
        &w,
        "queue_chart",
        json!({"id": "production", "queue": "../users", "hours": 1, "width": 400, "height": 200, "dark": false}),
    )
    .unwrap_err();
    assert_eq!(bad_queue["kind"], "invalid", "{bad_queue}");
    let depth = invoke(
        &w,
        "depth_chart",
        json!({"queue": "render", "points": [["2026-11-26T10:00:00Z", 3.0], ["2026-11-26T10:00:05Z", 8.0]], "width": 400, "height": 160, "dark": true}),
    )
    .unwrap();
    assert!(depth.as_str().unwrap().starts_with("<svg"), "{depth}");
    let many: Vec<_> = (0..2001)
        .map(|i| {
            json!([
                format!("2026-11-26T10:{:02}:{:02}Z", i / 60 % 60, i % 60),
                1.0
            ])
        })
        .collect();
    let too_many = invoke(
        &w,
        "depth_chart",
        json!({"queue": "render", "points": many, "width": 400, "height": 160, "dark": false}),
    )
    .unwrap_err();
    assert_eq!(too_many["kind"], "invalid", "{too_many}");
    let unknown = invoke(&w, "health", json!({"id": "staging"})).unwrap_err();
    assert_eq!(unknown["kind"], "invalid");
    let file = std::fs::read_to_string(dir.path().join("profiles.json")).unwrap();
    assert!(!file.contains("awt_"), "the profiles file holds no token");

    let prefs = invoke(&w, "prefs", json!({})).unwrap();
    assert_eq!(prefs["enabled"], true, "{prefs}");
    invoke(&w, "set_prefs", json!({"prefs": {"enabled": false, "warnings": true, "quiet_hours": ["22:00:00", "07:00:00"], "dedupe_secs": 60, "paused_until": null}})).unwrap();
    assert_eq!(
        invoke(&w, "prefs", json!({})).unwrap()["quiet_hours"],
        json!(["22:00:00", "07:00:00"])
    );
    let saved = std::fs::read_to_string(dir.path().join("prefs.json")).unwrap();
    assert!(
        saved.contains("22:00:00"),
        "preferences outlive the console: {saved}"
    );
    let too_long = invoke(&w, "set_prefs", json!({"prefs": {"enabled": true, "warnings": false, "quiet_hours": null, "dedupe_secs": 999999, "paused_until": null}})).unwrap_err();
    assert_eq!(too_long["kind"], "invalid", "{too_long}");
    let bad_prefs = invoke(&w, "set_prefs", json!({"prefs": {"enabled": "yes"}})).unwrap_err();
    assert!(bad_prefs.to_string().contains("invalid"), "{bad_prefs}");

    invoke(
        &w,
        "report_error",
        json!({"message": "boom for ada@example.com", "stack": null, "view": "overview"}),
    )
    .unwrap();

    // Removing the profile forgets its token too (never logged in here: nothing to revoke).
    invoke(&w, "remove_profile", json!({"id": "production"})).unwrap();
    assert_eq!(store.get(key).unwrap(), None);
    assert_eq!(
        invoke(&w, "profiles", json!({})).unwrap(),
        json!({"profiles": [], "active": null})
    );
    let gone = invoke(&w, "remove_profile", json!({"id": "production"})).unwrap_err();
    assert_eq!(gone["kind"], "invalid");
}
