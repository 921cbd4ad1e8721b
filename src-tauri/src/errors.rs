//! The console's own error tracking (the plan's "client-side error tracking"). Off by default:
//! with `AIRWAVE_CONSOLE_SENTRY_DSN` set, panics in the Rust core and uncaught UI errors (each
//! view's error boundary, `window.onerror`, unhandled rejections) are sent to Sentry. Everything
//! that leaves is scrubbed first by [`secrets::redact`]: API tokens, JWTs, bearer credentials,
//! passwords in URLs and e-mail addresses; no default PII (no IP, no user), no server names.

use airwave_console_core::secrets::redact;
use sentry::protocol::{Event, Exception, Value};

/// Starts error reporting when a DSN is configured; the guard flushes pending reports on drop.
pub fn init() -> Option<sentry::ClientInitGuard> {
    let dsn = std::env::var("AIRWAVE_CONSOLE_SENTRY_DSN").ok()?;
    init_with(&dsn)
}

/// [`init`] with an explicit DSN (tests point it at a local stand-in for Sentry's ingest).
pub fn init_with(dsn: &str) -> Option<sentry::ClientInitGuard> {
    let dsn: sentry::types::Dsn = match dsn.parse() {
        Ok(d) => d,
        Err(_) => {
            eprintln!("AIRWAVE_CONSOLE_SENTRY_DSN is not a valid DSN: error reporting stays off");
            return None;
        }
    };
    let guard = sentry::init(sentry::ClientOptions {
        dsn: Some(dsn),
        release: Some(concat!("airwave-console@", env!("CARGO_PKG_VERSION")).into()),
        send_default_pii: false,
        server_name: None,
        before_send: Some(std::sync::Arc::new(|e| Some(scrub(e)))),
        before_breadcrumb: Some(std::sync::Arc::new(|mut b| {
            b.message = b.message.map(|m| redact(&m));
            Some(b)
        })),
        ..Default::default()
    });
    guard.is_enabled().then_some(guard)
}

/// Removes secrets from every free-text part of an event.
pub fn scrub(mut e: Event<'static>) -> Event<'static> {
    e.message = e.message.map(|m| redact(&m));
    e.server_name = None;
    e.user = None;
    e.request = None;
    for ex in &mut e.exception.values {
        ex.value = ex.value.take().map(|v| redact(&v));
    }
    if let Some(le) = e.logentry.as_mut() {
        le.message = redact(&le.message);
    }
    for v in e.extra.values_mut() {
        if let Value::String(s) = v {
            *s = redact(s);
        }
    }
    e
}

/// An uncaught error from the UI: logged (scrubbed) and, with a DSN, reported.
pub fn report_ui_error(message: &str, stack: Option<&str>, view: Option<&str>) {
    let message = redact(&truncate(message, 2_000));
    eprintln!("ui error in {}: {message}", view.unwrap_or("the window"));
    let mut event = Event {
        level: sentry::Level::Error,
        platform: "javascript".into(),
        exception: vec![Exception {
            ty: "UiError".into(),
            value: Some(message),
            ..Default::default()
        }]
        .into(),
        ..Default::default()
    };
    if let Some(view) = view {
        event.tags.insert("view".into(), truncate(view, 64));
    }
    if let Some(stack) = stack {
        event.extra.insert(
            "stack".into(),
            Value::String(redact(&truncate(stack, 8_000))),
        );
    }
    sentry::capture_event(event);
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
