//! Error tracking end to end: the server's DSN points at a local stand-in for Sentry's ingest,
//! which reads each envelope with Sentry's own parser.

use airwave_api::{RegisterIn, Role};
use airwave_tests::mail::{ResendScript, ResendStandIn};
use airwave_tests::sentry_ingest::SentryStandIn;
use airwave_tests::{TestApp, PASSWORD};
use serde_json::Value;
use std::time::Duration;

fn tag<'a>(e: &'a Value, name: &str) -> Option<&'a str> {
    e["tags"][name].as_str()
}

#[tokio::test]
async fn a_handler_panic_answers_500_and_sends_exactly_one_scrubbed_event() {
    let sentry = SentryStandIn::start().await;
    let app = TestApp::spawn_with(&[
        ("SENTRY_DSN", sentry.dsn.as_str()),
        ("SENTRY_ENVIRONMENT", "ci"),
        ("SENTRY_RELEASE", "airwave-server@test"),
        ("AIRWAVE_SENTRY_DEBUG_ROUTE", "on"),
    ])
    .await;
    let (admin, _) = app
        .user_with_role("ada.admin@example.com", Role::Admin)
        .await;
    let token = app.login("ada.admin@example.com").await.token;
    let resp = app
        .http()
        .get(app.url("/api/debug/panic?token=awt_INQUERY0123456789"))
        .bearer_auth(&token)
        .header("x-request-id", "req-panic-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert!(resp.headers().get("content-type").is_some_and(|v| v
        .to_str()
        .unwrap_or_default()
        .starts_with("application/problem+json")));
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(problem["code"], "internal");
    assert!(
        !problem.to_string().contains("ada.admin"),
        "the answer says nothing of the panic"
    );

    let event = sentry
        .wait_event(|e| {
            e["exception"]["values"][0]["value"]
                .as_str()
                .is_some_and(|v| v.contains("a forced panic"))
        })
        .await;
    assert_eq!(tag(&event, "request_id"), Some("req-panic-1"));
    assert_eq!(tag(&event, "role"), Some("admin"));
    assert_eq!(event["user"]["id"], admin.id.as_str());
    assert_eq!(event["environment"], "ci");
    assert_eq!(event["release"], "airwave-server@test");
    assert_eq!(
        event["transaction"], "GET /api/debug/panic",
        "named by its route"
    );
    // Anything else that would be reported has had its chance to arrive: exactly one event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = sentry.events();
    assert_eq!(events.len(), 1, "one panic, one event: {events:#?}");
    for envelope in sentry.envelopes() {
        for secret in [
            "ada.admin@example.com",
            "someone@example.com",
            "awt_DEBUGtoken0123456789",
            "awt_INQUERY0123456789",
            token.as_str(),
            PASSWORD,
        ] {
            assert!(
                !envelope.raw.contains(secret),
                "{secret} left for Sentry: {}",
                envelope.raw
            );
        }
    }
    assert!(sentry.problems().is_empty(), "{:?}", sentry.problems());
}

#[tokio::test]
async fn a_job_given_up_on_sends_one_event_with_its_job_and_correlation_id() {
    let sentry = SentryStandIn::start().await;
    let resend = ResendStandIn::start().await;
    // Resend refuses the message for good, quoting the address (as it does).
    resend.script(vec![ResendScript::Rejected(
        "The `to` field has an invalid address: grace@example.com".into(),
    )]);
    let app = TestApp::spawn_with(&[
        ("SENTRY_DSN", sentry.dsn.as_str()),
        ("RESEND_API_KEY", resend.key.as_str()),
        ("RESEND_API_URL", resend.url.as_str()),
    ])
    .await;
    app.api
        .register(&RegisterIn {
            email: "grace@example.com".into(),
            password: PASSWORD.into(),
            name: "Grace".into(),
        })
        .await
        .unwrap();
    let event = sentry
        .wait_event(|e| tag(e, "job.kind") == Some("email.send"))
        .await;
    let message = app
        .db
        .text(
            "SELECT id FROM emails WHERE to_address = $1",
            "grace@example.com",
        )
        .await
        .expect("the message is logged");
    assert_eq!(tag(&event, "correlation_id"), Some(message.as_str()));
    assert_eq!(tag(&event, "job.queue"), Some("email"));
    assert_eq!(tag(&event, "job.attempt"), Some("1"));
    assert!(tag(&event, "job.id").is_some_and(|id| id.starts_with("job_")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jobs: Vec<Value> = sentry
        .events()
        .into_iter()
        .filter(|e| tag(e, "job.kind").is_some())
        .collect();
    assert_eq!(jobs.len(), 1, "one dead job, one event: {jobs:#?}");
    for envelope in sentry.envelopes() {
        assert!(
            !envelope.raw.contains("grace@example.com"),
            "the address left for Sentry: {}",
            envelope.raw
        );
    }
}

#[tokio::test]
async fn sentry_test_sends_one_event_and_says_so() {
    let sentry = SentryStandIn::start().await;
    let app = TestApp::spawn().await;
    let out = app
        .cli(
            &["sentry", "test"],
            &[("SENTRY_DSN", sentry.dsn.as_str())],
            None,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("sentry test event sent"), "{stdout}");
    let event = sentry
        .wait_event(|e| tag(e, "check") == Some("sentry-test"))
        .await;
    let id = event["event_id"].as_str().unwrap_or("?").replace('-', "");
    assert!(
        stdout.replace('-', "").contains(&id),
        "the id printed: {stdout}"
    );

    // Without a DSN it says why and fails.
    let out = app.cli(&["sentry", "test"], &[], None).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SENTRY_DSN is not set"));
}

#[tokio::test]
async fn without_a_dsn_the_debug_route_is_refused_in_production_and_absent_by_default() {
    let app = TestApp::spawn().await;
    app.user_with_role("root@example.com", Role::Admin).await;
    let token = app.login("root@example.com").await.token;
    let resp = app
        .http()
        .get(app.url("/api/debug/panic"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "off unless asked for");
    let out = app
        .cli(
            &["config", "check"],
            &[
                ("AIRWAVE_ENV", "production"),
                ("AIRWAVE_SENTRY_DEBUG_ROUTE", "on"),
                ("SENTRY_DSN", "not a dsn"),
            ],
            None,
        )
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("AIRWAVE_SENTRY_DEBUG_ROUTE"), "{err}");
    assert!(err.contains("SENTRY_DSN"), "{err}");
}
