//! Mail test fixtures: the real SMTP server the test command starts (maildev, read through its
//! HTTP API), a local stand-in for Resend's API that checks the documented request, and a TCP
//! relay that can be cut to take an SMTP server "down" and bring it back.

// Test fixtures: a broken fixture should stop the test at once.
#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SMTP server of the test command: `(SMTP_URL, maildev's HTTP API)`. `None` (the test is not
/// run) outside `scripts/test` when no maildev is running; under `scripts/test` it is required.
pub fn smtp_server() -> Option<(String, url::Url)> {
    match (
        std::env::var("AIRWAVE_TEST_SMTP_URL"),
        std::env::var("AIRWAVE_TEST_MAILDEV_URL"),
    ) {
        (Ok(smtp), Ok(api)) => Some((
            smtp,
            url::Url::parse(&api).expect("AIRWAVE_TEST_MAILDEV_URL"),
        )),
        _ => {
            assert!(
                std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
                "scripts/test runs need maildev (AIRWAVE_TEST_SMTP_URL, AIRWAVE_TEST_MAILDEV_URL)"
            );
            eprintln!("not run: needs maildev (scripts/test starts it)");
            None
        }
    }
}

/// Every message maildev received for `to` (its JSON: `subject`, `text`, `html`, `headers`…).
pub async fn maildev_messages(api: &url::Url, to: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(api.join("/api/email").unwrap())
        .await
        .expect("maildev answers")
        .json()
        .await
        .expect("maildev's list");
    all.into_iter()
        .filter(|m| {
            m["to"].as_array().is_some_and(|t| {
                t.iter().any(|a| {
                    a["address"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(to))
                })
            })
        })
        .collect()
}

/// Waits up to 20 s for `n` messages to `to` at maildev.
pub async fn maildev_wait(api: &url::Url, to: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let got = maildev_messages(api, to).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    maildev_messages(api, to).await
}

/// A fresh address nobody else's test uses (maildev is shared by every test of a run).
pub fn unique_address(name: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{name}.{}.{nanos:x}.{}@example.com",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the Resend stand-in does with the next requests.
#[derive(Debug, Clone)]
pub enum ResendScript {
    /// `429` with `Retry-After: {0}` seconds.
    TooMany(u64),
    /// `503`.
    Unavailable,
    /// `422` with this message (Resend's validation error): a permanent failure.
    Rejected(String),
}

/// One request the stand-in took (delivered or not).
#[derive(Debug, Clone)]
pub struct ResendRequest {
    pub idempotency_key: Option<String>,
    pub body: Value,
    pub status: u16,
}

#[derive(Default)]
struct ResendState {
    script: Vec<ResendScript>,
    requests: Vec<ResendRequest>,
    /// Idempotency-Key → (body, id): a key seen again with the same body answers the same id
    /// and delivers nothing new, as Resend does.
    keys: HashMap<String, (Value, String)>,
    delivered: Vec<(String, Value)>,
    problems: Vec<String>,
}

/// A local server standing in for Resend's API (`POST /emails`, `GET /domains`), checking the
/// documented request: bearer key, JSON body with `from`, `to` (1–50), `subject`, `html`/`text`,
/// `tags` of `{name, value}` (ASCII letters, digits, `_`, `-`), and the `Idempotency-Key` header
/// (at most 256 characters).
#[derive(Clone)]
pub struct ResendStandIn {
    pub url: url::Url,
    pub key: String,
    state: Arc<Mutex<ResendState>>,
}

fn tag_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_body(b: &Value) -> Result<(), String> {
    let from = b["from"].as_str().unwrap_or("");
    if from.is_empty() {
        return Err("`from` is required".into());
    }
    let to = b["to"].as_array().ok_or("`to` must be an array")?;
    if to.is_empty()
        || to.len() > 50
        || !to
            .iter()
            .all(|t| t.as_str().is_some_and(|t| t.contains('@')))
    {
        return Err("`to` must hold 1 to 50 addresses".into());
    }
    if b["subject"].as_str().is_none_or(str::is_empty) {
        return Err("`subject` is required".into());
    }
    if b["html"].as_str().is_none() && b["text"].as_str().is_none() {
        return Err("`html` or `text` is required".into());
    }
    for t in b["tags"].as_array().map_or(&[][..], Vec::as_slice) {
        let (Some(n), Some(v)) = (t["name"].as_str(), t["value"].as_str()) else {
            return Err("a tag is {name, value}".into());
        };
        if !tag_ok(n) || !tag_ok(v) {
            return Err(format!("tag {n}={v} has characters Resend refuses"));
        }
    }
    if let Some(obj) = b.as_object() {
        let known = [
            "from",
            "to",
            "subject",
            "html",
            "text",
            "tags",
            "headers",
            "cc",
            "bcc",
            "reply_to",
            "attachments",
            "scheduled_at",
        ];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown field `{k}`"));
        }
    }
    Ok(())
}

async fn resend_emails(
    State(s): State<(Arc<Mutex<ResendState>>, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let (state, key) = s;
    let mut st = state.lock().unwrap();
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let err = |status: StatusCode, name: &str, message: &str| {
        (
            status,
            Json(json!({"statusCode": status.as_u16(), "name": name, "message": message})),
        )
            .into_response()
    };
    let record = |st: &mut ResendState, body: Value, status: u16| {
        st.requests.push(ResendRequest {
            idempotency_key: idem.clone(),
            body,
            status,
        });
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {key}"))
    {
        record(&mut st, Value::Null, 401);
        return err(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header.",
        );
    }
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        st.problems
            .push("content-type is not application/json".into());
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        record(&mut st, Value::Null, 422);
        return err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "The body is not JSON.",
        );
    };
    if let Some(k) = &idem {
        if k.len() > 256 {
            st.problems.push("Idempotency-Key longer than 256".into());
        }
    } else {
        st.problems.push("no Idempotency-Key".into());
    }
    if let Err(e) = check_body(&body) {
        record(&mut st, body, 422);
        return err(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", &e);
    }
    if !st.script.is_empty() {
        let next = st.script.remove(0);
        return match next {
            ResendScript::TooMany(after) => {
                record(&mut st, body, 429);
                let mut r = err(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_exceeded",
                    "Too many requests.",
                );
                r.headers_mut()
                    .insert("retry-after", after.to_string().parse().unwrap());
                r
            }
            ResendScript::Rejected(message) => {
                record(&mut st, body, 422);
                err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_error",
                    &message,
                )
            }
            ResendScript::Unavailable => {
                record(&mut st, body, 503);
                err(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "internal_server_error",
                    "Try again.",
                )
            }
        };
    }
    if let Some(k) = &idem {
        if let Some((seen, id)) = st.keys.get(k).cloned() {
            if seen != body {
                record(&mut st, body, 409);
                return err(
                    StatusCode::CONFLICT,
                    "invalid_idempotent_request",
                    "Same idempotency key, different payload.",
                );
            }
            record(&mut st, body, 200);
            return Json(json!({"id": id})).into_response();
        }
    }
    let id = format!("re_{:08}", st.delivered.len() + 1);
    if let Some(k) = &idem {
        st.keys.insert(k.clone(), (body.clone(), id.clone()));
    }
    st.delivered.push((id.clone(), body.clone()));
    record(&mut st, body, 200);
    Json(json!({"id": id})).into_response()
}

impl ResendStandIn {
    pub async fn start() -> Self {
        let key = "re_test_0123456789abcdef".to_owned();
        let state = Arc::new(Mutex::new(ResendState::default()));
        let app = Router::new()
            .route("/emails", post(resend_emails))
            .route(
                "/domains",
                get(|| async { Json(json!({"object": "list", "data": []})) }),
            )
            .with_state((state.clone(), key.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: url::Url::parse(&format!("http://{addr}")).unwrap(),
            key,
            state,
        }
    }

    /// Answers the next requests so.
    pub fn script(&self, s: Vec<ResendScript>) {
        self.state.lock().unwrap().script = s;
    }

    pub fn requests(&self) -> Vec<ResendRequest> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The messages delivered (each once), with the id answered.
    pub fn delivered(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().delivered.clone()
    }

    /// What it noticed that Resend would object to (should be empty).
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }
}

/// A TCP relay to `target` that can be cut: while down, connections are accepted and closed at
/// once (an SMTP server that is not there); up again, they are relayed.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr, up: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let flag = Arc::new(AtomicBool::new(up));
        let f = flag.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !f.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Self { addr, up: flag }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}
