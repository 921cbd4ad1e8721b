//! The live operations stream (`GET /api/ops/stream`, Server-Sent Events), as the console uses
//! it: one background task per connection that hands every event to a channel, remembers the last
//! event id, and on any disconnect reconnects with `Last-Event-ID` after a backoff (250 ms
//! doubling to 10 s, reset once connected) — so a server restart or a network blip loses nothing.
//! The connection state (`Connecting`, `Live`, `Disconnected { since }`) is watched by the UI to
//! show "disconnected — data as of …".
//!
//! The wire format is decoded by `eventsource-stream` (UTF-8 across chunk boundaries, LF, CRLF and
//! CR line endings, comments, multi-line data), not by hand.

use chrono::{DateTime, Utc};
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// Why a stream of events ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the stream is not valid UTF-8")]
    Utf8,
    #[error("the stream is not Server-Sent Events")]
    Parser,
    #[error("the connection broke")]
    Transport,
}

/// Decodes a byte stream of Server-Sent Events into events (comments and keep-alives dropped).
/// `data` is parsed as JSON when it is JSON, else kept as a string.
pub fn decode<S, B, E>(bytes: S) -> impl Stream<Item = Result<StreamEvent, DecodeError>>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
{
    bytes.eventsource().map(|r| match r {
        Ok(e) => Ok(StreamEvent {
            id: e.id.trim().parse().ok(),
            event: e.event,
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::String(e.data)),
        }),
        Err(eventsource_stream::EventStreamError::Utf8(_)) => Err(DecodeError::Utf8),
        Err(eventsource_stream::EventStreamError::Parser(_)) => Err(DecodeError::Parser),
        Err(eventsource_stream::EventStreamError::Transport(_)) => Err(DecodeError::Transport),
    })
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

/// Where a subscription gets its token, read again on every (re)connect: a renewed token is
/// picked up without resubscribing. `None` means there is none any more (logged out).
pub type TokenSource = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Subscribes to `base`'s stream with `token`, resuming after `last_event_id` when given.
/// `buffer` bounds the events waiting for the UI; when it is full the task stops reading (the
/// server holds the rest in its log), so a slow UI never makes memory grow.
pub fn subscribe(
    base: Url,
    token: String,
    last_event_id: Option<i64>,
    buffer: usize,
) -> Subscription {
    subscribe_with(
        base,
        Arc::new(move || Some(token.clone())),
        last_event_id,
        buffer,
    )
}

/// [`subscribe`], with the token read from `token` at every connect.
pub fn subscribe_with(
    base: Url,
    token: TokenSource,
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
    token: TokenSource,
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
        let Some(token) = token() else {
            let _ = state.send(ConnState::Unauthorized);
            return;
        };
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
            Ok(resp) => {
                let _ = state.send(ConnState::Live);
                backoff = Duration::from_millis(250);
                // Any bytes (keep-alive comments too) prove the connection alive; none for 45 s
                // (three missed keep-alives) means it is dead.
                let started = tokio::time::Instant::now();
                let seen = Arc::new(AtomicU64::new(0));
                let seen_in = seen.clone();
                let bytes = resp.bytes_stream().inspect(move |_| {
                    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    seen_in.store(ms, Ordering::Relaxed);
                });
                let events = decode(bytes);
                tokio::pin!(events);
                loop {
                    tokio::select! {
                        next = events.next() => match next {
                            Some(Ok(ev)) => {
                                let id = ev.id;
                                if tx.send(ev).await.is_err() {
                                    return; // nobody listens any more
                                }
                                if id.is_some() {
                                    last = id;
                                }
                            }
                            Some(Err(e)) => break e.to_string(),
                            None => break "the server closed the stream".to_owned(),
                        },
                        () = tokio::time::sleep(Duration::from_secs(5)) => {
                            let quiet = started.elapsed().saturating_sub(Duration::from_millis(seen.load(Ordering::Relaxed)));
                            if quiet > Duration::from_secs(45) {
                                break "no data or keep-alive for 45 s".to_owned();
                            }
                        }
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

    async fn decode_chunks(chunks: &[&[u8]]) -> Vec<Result<StreamEvent, DecodeError>> {
        let owned: Vec<Result<Vec<u8>, std::io::Error>> =
            chunks.iter().map(|c| Ok(c.to_vec())).collect();
        decode(futures_util::stream::iter(owned)).collect().await
    }

    #[tokio::test]
    async fn frames_split_on_blank_lines_and_skip_comments() {
        let evs = decode_chunks(&[
            b": keep-alive\n\nid: 7\nevent: health.changed\ndata: {\"a\":1}\n\nid: 8\nevent: queue.st".as_slice(),
            b"ats\ndata: {\"b\":2}\n\n".as_slice(),
        ]).await;
        let evs: Vec<StreamEvent> = evs.into_iter().map(Result::unwrap).collect();
        assert_eq!(evs.len(), 2, "{evs:?}");
        assert_eq!(
            (evs[0].id, evs[0].event.as_str()),
            (Some(7), "health.changed")
        );
        assert_eq!(evs[0].data["a"], 1);
        assert_eq!(
            (evs[1].id, evs[1].event.as_str()),
            (Some(8), "queue.stats"),
            "a frame split across chunks"
        );
        assert_eq!(evs[1].data["b"], 2);
    }

    #[tokio::test]
    async fn a_character_split_across_chunks_arrives_whole() {
        let text = "{\"output\":\"Datenbank überlastet ✓\"}";
        let frame = format!("id: 3\nevent: health.changed\ndata: {text}\n\n");
        let bytes = frame.as_bytes();
        // Split inside the three bytes of ✓ (and inside ü in a second run).
        let check = bytes.iter().position(|&b| b == 0xE2).unwrap() + 1;
        let umlaut = bytes.iter().position(|&b| b == 0xC3).unwrap() + 1;
        for cut in [check, umlaut] {
            let evs = decode_chunks(&[&bytes[..cut], &bytes[cut..]]).await;
            assert_eq!(evs.len(), 1);
            let ev = evs[0].as_ref().unwrap();
            assert_eq!(ev.data["output"], "Datenbank überlastet ✓", "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn crlf_and_cr_line_endings_are_frames_too() {
        let evs = decode_chunks(&[
            b"id: 1\r\nevent: a\r\ndata: {\"n\":1}\r\n\r\n".as_slice(),
            b"id: 2\revent: b\rdata: {\"n\":2}\r\r".as_slice(),
            b": comment\r\n\r\nid: 3\r\ndata: line one\r\ndata: line two\r\n\r\n".as_slice(),
        ])
        .await;
        let evs: Vec<StreamEvent> = evs.into_iter().map(Result::unwrap).collect();
        let ids: Vec<Option<i64>> = evs.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![Some(1), Some(2), Some(3)]);
        assert_eq!((evs[0].event.as_str(), evs[1].event.as_str()), ("a", "b"));
        assert_eq!(evs[1].data["n"], 2);
        assert_eq!(evs[2].event, "message");
        assert_eq!(
            evs[2].data,
            serde_json::Value::String("line one\nline two".into())
        );
    }
}
