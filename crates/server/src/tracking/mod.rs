//! Error tracking with Sentry. With `SENTRY_DSN` (or the plan's `NEXT_PUBLIC_SENTRY_DSN`) set:
//! panics, `tracing` errors (as events; warnings become breadcrumbs), each request in its own
//! hub with one transaction named by its matched route (`GET /api/ops/emails/{id}`), and every
//! job given up on (dead) with its id, kind, attempt and correlation id. Without a DSN nothing is
//! sent and nothing else changes.
//!
//! Nothing leaves unscrubbed ([`scrub`]): every string in an event — messages, exceptions,
//! breadcrumbs, tags, contexts — goes through [`airwave_api::redact::redact`] (tokens, JWTs,
//! bearer credentials, URL credentials, e-mail addresses, fields named like secrets); requests
//! keep their method and path only; users keep their id only. No default PII is sent.

use crate::queue::{Job, JobFailure};
use airwave_api::redact::redact;
use sentry::protocol::{Event, Value};
use std::sync::Arc;

pub mod settings;

/// The `tracing` target of a log line that reports something Sentry already has (a caught
/// panic): it stays a breadcrumb, so one failure is one event.
pub const ALREADY_REPORTED: &str = "airwave::already_reported";

/// The error-tracking feature: its settings (the client itself starts before the runtime).
pub struct Feature;

impl crate::feature::Feature for Feature {
    fn name(&self) -> &'static str {
        "tracking"
    }

    fn settings(&self) -> Option<crate::config::settings::Section> {
        Some(settings::section())
    }

    fn routes(&self) -> crate::feature::Routes {
        utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(debug_panic))
    }
}

/// Panics on purpose, when `AIRWAVE_SENTRY_DEBUG_ROUTE=on` (never in production; admins only):
/// a handler panic is answered `500` and reported to error tracking once. Otherwise `404`.
#[utoipa::path(get, path = "/api/debug/panic", tag = "operations",
    responses((status = 500, body = airwave_api::Problem), (status = 401, body = airwave_api::Problem),
        (status = 403, body = airwave_api::Problem), (status = 404, body = airwave_api::Problem)),
    security(("bearer" = [])))]
pub async fn debug_panic(
    axum::extract::State(s): axum::extract::State<crate::state::AppState>,
    who: crate::auth::Principal,
) -> crate::error::Result<()> {
    if !s.config.tracking.debug_route {
        return Err(crate::error::Error::not_found("route"));
    }
    who.require(&[airwave_api::Role::Admin])?;
    panic!("a forced panic for someone@example.com holding awt_DEBUGtoken0123456789");
}

/// Starts the Sentry client when a DSN is configured; the guard flushes what is pending when
/// dropped (at shutdown). `None`: error tracking is off.
pub fn init(cfg: &settings::TrackingConfig) -> Option<sentry::ClientInitGuard> {
    let dsn = cfg.dsn.clone()?;
    let guard = sentry::init(sentry::ClientOptions {
        dsn: Some(dsn),
        release: Some(cfg.release.clone().into()),
        environment: Some(cfg.environment.clone().into()),
        sample_rate: cfg.sample_rate,
        traces_sample_rate: cfg.traces_sample_rate,
        send_default_pii: false,
        attach_stacktrace: false,
        before_send: Some(Arc::new(|e| Some(scrub(e)))),
        before_breadcrumb: Some(Arc::new(|mut b| {
            b.message = b.message.map(|m| redact(&m));
            for v in b.data.values_mut() {
                scrub_value(v);
            }
            Some(b)
        })),
        shutdown_timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    });
    guard.is_enabled().then_some(guard)
}

/// The `tracing` layer: errors become events, warnings and info breadcrumbs (a caught panic's
/// log line stays a breadcrumb: the panic itself is the event).
pub fn tracing_layer<S>() -> sentry::integrations::tracing::SentryLayer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use sentry::integrations::tracing::EventFilter;
    sentry::integrations::tracing::layer()
        // `tracing` spans are not transactions (requests and jobs make their own).
        .span_filter(|_| false)
        .event_filter(|md| match (md.target(), *md.level()) {
            // tower-http's "response failed" follows every 500, which is reported already.
            (ALREADY_REPORTED | "tower_http::trace::on_failure", _) => EventFilter::Breadcrumb,
            (_, tracing::Level::ERROR) => EventFilter::Event,
            (_, tracing::Level::WARN | tracing::Level::INFO) => EventFilter::Breadcrumb,
            _ => EventFilter::Ignore,
        })
}

/// Every string of a JSON value, redacted.
fn scrub_value(v: &mut Value) {
    match v {
        Value::String(s) => *s = redact(s),
        Value::Array(a) => a.iter_mut().for_each(scrub_value),
        Value::Object(o) => o.values_mut().for_each(scrub_value),
        _ => {}
    }
}

/// The request headers an event may keep (none of them carries a credential or an address).
const KEPT_HEADERS: &[&str] = &[
    "user-agent",
    "content-type",
    "content-length",
    "x-request-id",
];

/// What leaves for Sentry: every string redacted; the request reduced to its method, path
/// (no query: approval links carry their token there) and a few harmless headers; the user to
/// their id.
pub fn scrub(e: Event<'static>) -> Event<'static> {
    let mut e = e;
    if let Some(r) = e.request.as_mut() {
        if let Some(url) = r.url.as_mut() {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        r.query_string = None;
        r.cookies = None;
        r.data = None;
        r.env.clear();
        r.headers
            .retain(|k, _| KEPT_HEADERS.contains(&k.to_ascii_lowercase().as_str()));
    }
    if let Some(u) = e.user.as_mut() {
        u.email = None;
        u.ip_address = None;
        u.username = None;
        u.other.clear();
    }
    // Everything else, structurally: serialise, redact every string, read back.
    match serde_json::to_value(&e) {
        Ok(mut v) => {
            scrub_value(&mut v);
            match serde_json::from_value::<Event<'static>>(v) {
                Ok(clean) => clean,
                Err(_) => unreadable(e),
            }
        }
        Err(_) => unreadable(e),
    }
}

/// An event that could not be scrubbed structurally keeps only what carries no free text.
fn unreadable(e: Event<'static>) -> Event<'static> {
    Event {
        event_id: e.event_id,
        level: e.level,
        timestamp: e.timestamp,
        release: e.release,
        environment: e.environment,
        message: Some("an event that could not be scrubbed was reduced to this".into()),
        ..Default::default()
    }
}

/// A hub for one job's attempt: what it reports carries the job's id, kind, queue, attempt and
/// correlation id (what enqueued it: an execution, a message, a bulk operation).
pub fn job_hub(job: &Job) -> Arc<sentry::Hub> {
    let current = sentry::Hub::current();
    if current.client().is_none() {
        return current;
    }
    // From the main hub, not this thread's: nothing of another job carries over.
    let hub = Arc::new(sentry::Hub::new_from_top(sentry::Hub::main()));
    hub.configure_scope(|s| {
        s.set_tag("job.id", job.id.as_str());
        s.set_tag("job.kind", &job.kind);
        s.set_tag("job.queue", &job.queue);
        s.set_tag("job.attempt", job.attempts);
        if let Some(c) = &job.correlation_id {
            s.set_tag("correlation_id", c);
        }
        s.set_transaction(Some(&format!("job {}", job.kind)));
    });
    hub
}

/// A job given up on (dead) is one event, in its hub. A panic is not reported again: the panic
/// itself already was.
pub fn job_dead(hub: &sentry::Hub, job: &Job, failure: &JobFailure) {
    if failure.location == "queue.panic" {
        return;
    }
    hub.capture_event(Event {
        level: sentry::Level::Error,
        message: Some(format!(
            "job {} failed for good after {} attempt(s): {}",
            job.kind, job.attempts, failure.message
        )),
        fingerprint: vec![
            "job".into(),
            job.kind.clone().into(),
            failure.location.clone().into(),
        ]
        .into(),
        ..Default::default()
    });
}

/// `airwave-server sentry test`: sends one test event and waits for it to leave. Its id is
/// printed; an error says why nothing could be sent.
pub fn send_test(cfg: &settings::TrackingConfig) -> anyhow::Result<sentry::types::Uuid> {
    let Some(guard) = init(cfg) else {
        anyhow::bail!("SENTRY_DSN is not set: there is nowhere to send a test event");
    };
    let id = sentry::capture_event(Event {
        level: sentry::Level::Info,
        message: Some("airwave-server sentry test: error tracking works".into()),
        tags: [("check".to_owned(), "sentry-test".to_owned())].into(),
        ..Default::default()
    });
    if !guard.flush(Some(std::time::Duration::from_secs(10))) {
        anyhow::bail!(
            "the test event {id} could not be sent within 10 s (is the DSN's host reachable?)"
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_secret_or_personal_leaves_in_an_event() {
        let mut e = Event {
            message: Some("reset for ada@example.com failed with awt_SECRETtoken1".into()),
            ..Default::default()
        };
        e.extra.insert(
            "body".into(),
            Value::String(r#"{"password":"hunter2","to":"bob@example.com"}"#.into()),
        );
        e.tags.insert("note".into(), "Bearer abc.def".into());
        e.request = Some(sentry::protocol::Request {
            url: "https://u:pw@api.example/api/approvals/view?token=tok123"
                .parse()
                .ok(),
            method: Some("GET".into()),
            headers: [
                ("Authorization".to_owned(), "Bearer awt_x".to_owned()),
                ("Cookie".to_owned(), "s=1".to_owned()),
                ("User-Agent".to_owned(), "curl".to_owned()),
            ]
            .into(),
            ..Default::default()
        });
        e.user = Some(sentry::protocol::User {
            id: Some("usr_1".into()),
            email: Some("ada@example.com".into()),
            ..Default::default()
        });
        e.breadcrumbs.values.push(sentry::protocol::Breadcrumb {
            message: Some("mail to carol@example.com".into()),
            ..Default::default()
        });
        let out = serde_json::to_string(&scrub(e)).unwrap_or_default();
        for secret in [
            "ada@example.com",
            "bob@example.com",
            "carol@example.com",
            "awt_SECRETtoken1",
            "hunter2",
            "tok123",
            "u:pw",
            "awt_x",
            "s=1",
            "abc.def",
        ] {
            assert!(!out.contains(secret), "{secret} left: {out}");
        }
        for kept in ["usr_1", "api.example/api/approvals/view", "curl", "GET"] {
            assert!(out.contains(kept), "{kept} is gone: {out}");
        }
    }
}
