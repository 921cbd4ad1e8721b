//! A local stand-in for Sentry's ingest (it cannot run here): the host of the DSN the server is
//! given. It checks the documented request — `POST /api/{project}/envelope/` with an
//! `X-Sentry-Auth` header naming the DSN's public key and protocol version 7 — and reads each
//! envelope with Sentry's own parser (`sentry-types`), keeping the raw bytes too, so a test can
//! look for a secret anywhere in what left.

// Test fixtures: a broken fixture should stop the test at once.
#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The public key in the DSN the stand-in accepts.
pub const KEY: &str = "0123456789abcdef0123456789abcdef";
pub const PROJECT: &str = "42";

/// One envelope as it arrived.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub raw: String,
    /// Its events (JSON, as Sentry's parser read them).
    pub events: Vec<Value>,
    pub transactions: Vec<Value>,
}

#[derive(Default)]
struct Inbox {
    envelopes: Vec<Envelope>,
    problems: Vec<String>,
}

pub struct SentryStandIn {
    /// The DSN to give the server.
    pub dsn: String,
    inbox: Arc<Mutex<Inbox>>,
}

async fn envelope(
    State(inbox): State<Arc<Mutex<Inbox>>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut st = inbox.lock().unwrap();
    let auth = headers
        .get("x-sentry-auth")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if project != PROJECT
        || !auth.starts_with("Sentry ")
        || !auth.contains(&format!("sentry_key={KEY}"))
        || !auth.contains("sentry_version=7")
    {
        st.problems
            .push(format!("bad request: project {project}, auth {auth:?}"));
        return StatusCode::UNAUTHORIZED;
    }
    let parsed = match sentry::Envelope::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            st.problems.push(format!("not an envelope: {e}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    let mut events = Vec::new();
    let mut transactions = Vec::new();
    for item in parsed.items() {
        match item {
            sentry::protocol::EnvelopeItem::Event(e) => {
                events.push(serde_json::to_value(e).unwrap());
            }
            sentry::protocol::EnvelopeItem::Transaction(t) => {
                transactions.push(serde_json::to_value(t).unwrap());
            }
            _ => {}
        }
    }
    st.envelopes.push(Envelope {
        raw: String::from_utf8_lossy(&body).into_owned(),
        events,
        transactions,
    });
    StatusCode::OK
}

impl SentryStandIn {
    pub async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/api/{project}/envelope/", post(envelope))
            .with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            dsn: format!("http://{KEY}@{addr}/{PROJECT}"),
            inbox,
        }
    }

    /// Every envelope so far.
    pub fn envelopes(&self) -> Vec<Envelope> {
        self.inbox.lock().unwrap().envelopes.clone()
    }

    /// Every event so far, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.envelopes()
            .into_iter()
            .flat_map(|e| e.events)
            .collect()
    }

    /// Requests that did not follow the documented protocol.
    pub fn problems(&self) -> Vec<String> {
        self.inbox.lock().unwrap().problems.clone()
    }

    /// Waits up to 20 s for an event `pred` accepts.
    pub async fn wait_event(&self, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..400 {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no such event arrived; got {:#?}; problems: {:?}",
            self.events(),
            self.problems()
        );
    }
}
