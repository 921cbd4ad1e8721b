//! The console's own error reports reach Sentry's ingest in its documented envelope shape, with
//! no secret in them: a local stand-in for the ingest (Sentry cannot run here) records what the
//! real client library sends for an uncaught UI error and for a panic in the Rust core.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

/// One HTTP request: (request line, headers lower-cased, body).
type Request = (String, Vec<(String, String)>, Vec<u8>);

fn ingest() -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                .unwrap();
            let _ = tx.send((line.trim_end().to_owned(), headers, body));
        }
    });
    (format!("http://publickey@{addr}/42"), rx)
}

fn next_event(rx: &mpsc::Receiver<Request>) -> (Vec<(String, String)>, serde_json::Value) {
    let (line, headers, body) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(line, "POST /api/42/envelope/ HTTP/1.1");
    let auth = &headers
        .iter()
        .find(|(k, _)| k == "x-sentry-auth")
        .unwrap()
        .1;
    assert!(
        auth.starts_with("Sentry ") && auth.contains("sentry_key=publickey"),
        "{auth}"
    );
    // An envelope: a header line, then (item header, item payload) line pairs.
    let text = String::from_utf8(body).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert!(header["event_id"].is_string(), "{header}");
    let item: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(item["type"], "event", "{item}");
    let event = serde_json::from_str(lines.next().unwrap()).unwrap();
    (headers, event)
}

#[test]
fn ui_errors_and_core_panics_are_reported_scrubbed() {
    let (dsn, rx) = ingest();
    let guard = airwave_console::errors::init_with(&dsn).expect("a DSN turns reporting on");

    airwave_console::errors::report_ui_error(
        "render failed for ada@example.com with awt_0123456789abcdef at https://ops:hunter2@ops.example.com/x",
        Some("at Overview (app.js:1:2) token awt_0123456789abcdef"),
        Some("overview"),
    );
    let (_, event) = next_event(&rx);
    let raw = event.to_string();
    for secret in ["ada@example.com", "awt_0123456789abcdef", "hunter2"] {
        assert!(!raw.contains(secret), "{secret} reached Sentry: {raw}");
    }
    assert_eq!(
        event["exception"]["values"][0]["type"], "UiError",
        "{event}"
    );
    assert!(event["exception"]["values"][0]["value"]
        .as_str()
        .unwrap()
        .contains("render failed for [email]"));
    assert_eq!(event["tags"]["view"], "overview");
    assert!(event["extra"]["stack"]
        .as_str()
        .unwrap()
        .contains("Overview"));
    assert!(
        event.get("user").is_none() && event.get("server_name").is_none(),
        "{event}"
    );

    let _ = std::panic::catch_unwind(|| {
        panic!("core panicked holding awt_feedfacefeedface1 for bob@example.org")
    });
    let (_, event) = next_event(&rx);
    let raw = event.to_string();
    assert!(
        !raw.contains("awt_feedfacefeedface1") && !raw.contains("bob@example.org"),
        "{raw}"
    );
    assert!(raw.contains("core panicked"), "{raw}");
    drop(guard);
}

#[test]
fn a_bad_dsn_leaves_reporting_off() {
    assert!(airwave_console::errors::init_with("not a dsn").is_none());
}
