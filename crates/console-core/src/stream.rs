//! The live operations stream (`GET /api/ops/stream`, Server-Sent Events), as the console uses
//! it: one background task per connection that hands every event to a channel, remembers the last
//! event id, and on any disconnect reconnects with `Last-Event-ID` after a backoff (250 ms
//! doubling to 10 s, reset once connected) — so a server restart or a network blip loses nothing.
//! The connection state (`Connecting`, `Live`, `Disconnected { since }`) is watched by the UI to
//! show "disconnected — data as of …".

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use url::Url;

/// One event from the stream (forwarded to the UI as the `ops-event` Tauri event).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct StreamEvent {
    #[cfg_attr(test, ts(type = "number | null"))]
    pub id: Option<i64>,
    pub event: String,
    #[cfg_attr(test, ts(type = "unknown"))]
    pub data: serde_json::Value,
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ConnState {
    Connecting,
    Live,
    /// Down since `since`; data shown is as of then. `reason` is safe to display.
    Disconnected {
        since: DateTime<Utc>,
        reason: String,
    },
    /// The token was refused: reconnecting will not help (log in again).
    Unauthorized,
}

/// Splits complete SSE frames off `buf`; returns the events (comments and keep-alives dropped).
pub fn parse_frames(buf: &mut String) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    while let Some(end) = buf.find("\n\n") {
        let frame: String = buf.drain(..end + 2).collect();
        let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
        let mut any = false;
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
                any = true;
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
                any = true;
            } else if let Some(v) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
                any = true;
            }
        }
        if any {
            out.push(StreamEvent {
                id,
                event,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
            });
        }
    }
    out
}

/// A running subscription; dropping it stops the task.
pub struct Subscription {
    pub events: mpsc::Receiver<StreamEvent>,
    pub state: watch::Receiver<ConnState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to `base`'s stream with `token`, resuming after `last_event_id` when given.
/// `buffer` bounds the events waiting for the UI; when it is full the task stops reading (the
/// server holds the rest in its log), so a slow UI never makes memory grow.
pub fn subscribe(
    base: Url,
    token: String,
    last_event_id: Option<i64>,
    buffer: usize,
) -> Subscription {
    let (tx, events) = mpsc::channel(buffer.max(1));
    let (state_tx, state) = watch::channel(ConnState::Connecting);
    let task = tokio::spawn(run(base, token, last_event_id, tx, state_tx));
    Subscription {
        events,
        state,
        task,
    }
}

async fn run(
    base: Url,
    token: String,
    mut last: Option<i64>,
    tx: mpsc::Sender<StreamEvent>,
    state: watch::Sender<ConnState>,
) {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("a client with static settings");
    let mut backoff = Duration::from_millis(250);
    let Ok(url) = base.join("/api/ops/stream") else {
        let _ = state.send(ConnState::Disconnected {
            since: Utc::now(),
            reason: "bad server URL".into(),
        });
        return;
    };
    loop {
        let _ = state.send(ConnState::Connecting);
        let mut req = http
            .get(url.clone())
            .bearer_auth(&token)
            .header("accept", "text/event-stream");
        if let Some(id) = last {
            req = req.header("last-event-id", id.to_string());
        }
        let reason = match req.send().await {
            Ok(resp) if resp.status() == 401 || resp.status() == 403 => {
                let _ = state.send(ConnState::Unauthorized);
                return;
            }
            Ok(resp) if !resp.status().is_success() => {
                format!("the server answered {}", resp.status())
            }
            Ok(mut resp) => {
                let _ = state.send(ConnState::Live);
                backoff = Duration::from_millis(250);
                let mut buf = String::new();
                // No keep-alive for 45 s (three missed) means the connection is dead.
                loop {
                    match tokio::time::timeout(Duration::from_secs(45), resp.chunk()).await {
                        Ok(Ok(Some(bytes))) => {
                            buf.push_str(&String::from_utf8_lossy(&bytes));
                            for ev in parse_frames(&mut buf) {
                                let id = ev.id;
                                if tx.send(ev).await.is_err() {
                                    return; // nobody listens any more
                                }
                                if id.is_some() {
                                    last = id;
                                }
                            }
                        }
                        Ok(Ok(None)) => break "the server closed the stream".to_owned(),
                        Ok(Err(_)) => break "the connection broke".to_owned(),
                        Err(_) => break "no data or keep-alive for 45 s".to_owned(),
                    }
                }
            }
            Err(_) => "the server could not be reached".to_owned(),
        };
        let _ = state.send(ConnState::Disconnected {
            since: Utc::now(),
            reason,
        });
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_on_blank_lines_and_skip_comments() {
        let mut buf = String::from(": keep-alive\n\nid: 7\nevent: health.changed\ndata: {\"a\":1}\n\nid: 8\nevent: queue.st");
        let evs = parse_frames(&mut buf);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].id, Some(7));
        assert_eq!(evs[0].event, "health.changed");
        assert_eq!(evs[0].data["a"], 1);
        assert_eq!(
            buf, "id: 8\nevent: queue.st",
            "the partial frame waits for the rest"
        );
    }
}
