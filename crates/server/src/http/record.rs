//! Writes every response down (`AIRWAVE_RECORD_RESPONSES`): the route it answered (as the OpenAPI
//! document names it), its status, content type and JSON body, one JSON object per line. The
//! black-box test suite checks each against the document, so a drift between what is sent and
//! what is documented fails CI. Refused in production by the configuration.

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The open file responses are appended to.
#[derive(Clone)]
pub struct Recorder(Arc<Mutex<std::fs::File>>);

impl Recorder {
    /// Opens (creates) the file, readable by its owner only: bodies carry tokens.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        tracing::warn!(path = %path.display(), "AIRWAVE_RECORD_RESPONSES is set: every response, tokens included, is written to this file (for the test suite only)");
        Ok(Self(Arc::new(Mutex::new(file))))
    }

    pub async fn layer(self, req: Request, next: Next) -> Response {
        let method = req.method().as_str().to_ascii_lowercase();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned());
        let resp = next.run(req).await;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let status = resp.status().as_u16();
        // Only JSON bodies are read (and given back whole); streams and files pass untouched.
        let (resp, body) = if content_type.contains("json") {
            let (parts, body) = resp.into_parts();
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(bytes) => {
                    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
                    let raw = json
                        .is_none()
                        .then(|| String::from_utf8_lossy(&bytes).into_owned());
                    (
                        Response::from_parts(parts, axum::body::Body::from(bytes)),
                        serde_json::json!({"json": json, "raw": raw}),
                    )
                }
                Err(_) => return Response::from_parts(parts, axum::body::Body::empty()),
            }
        } else {
            (resp, serde_json::Value::Null)
        };
        let line = serde_json::json!({
            "method": method, "route": route, "status": status,
            "content_type": content_type, "body": body,
        });
        if let Ok(mut f) = self.0.lock() {
            let _ = writeln!(f, "{line}");
        }
        resp
    }
}
