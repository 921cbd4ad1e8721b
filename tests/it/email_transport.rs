//! One conformance suite for the e-mail `Transport` seam, run against every transport: the
//! outbox folder, SMTP (lettre to the real maildev the test command starts, read back through
//! maildev's own API) and Resend (a local stand-in checking the documented request).

use airwave_server::email::transport::outbox::{Outbox, OutboxMessage};
use airwave_server::email::transport::resend::Resend;
use airwave_server::email::transport::smtp::Smtp;
use airwave_server::email::transport::{Envelope, Transport, TransportError};
use airwave_tests::mail::{self, ResendScript, ResendStandIn};
use std::time::Duration;

/// What a destination received for an address: subject, text part, HTML part, Message-ID.
struct Received {
    subject: String,
    text: String,
    html: String,
    message_id: String,
}

fn envelope(to: &str) -> Envelope {
    let id = format!(
        "msg_{}",
        to.split('@').next().unwrap().replace(['.', '-'], "_")
    );
    Envelope {
        message_id: format!("<{id}@airwave.test>"),
        id,
        from: "AIrWAVE Tests <noreply@airwave.test>".into(),
        to: to.into(),
        subject: "Grüße — your render is ready ✓".into(),
        html: "<!doctype html><html><body><p>Hello <b>Zoë</b> ✓</p></body></html>".into(),
        text: "Hello Zoë ✓\n\nhttps://app.example/executions/exe_1?token=abc_DEF-123\n".into(),
        tags: vec![("template".into(), "render_complete".into())],
    }
}

/// The contract every transport keeps.
async fn conformance(t: &dyn Transport, read: impl AsyncFn(&str) -> Vec<Received>) {
    t.check()
        .await
        .expect("a working transport passes its check");
    let to = mail::unique_address("conformance");
    let e = envelope(&to);
    let accepted = t.send(&e).await.expect("sent");
    assert!(
        accepted.provider_id.is_some(),
        "{}: a provider id",
        t.name()
    );
    let got = read(&to).await;
    assert_eq!(got.len(), 1, "{}: exactly one message arrives", t.name());
    let m = &got[0];
    assert_eq!(
        m.subject,
        e.subject,
        "{}: the subject, non-ASCII intact",
        t.name()
    );
    assert_eq!(
        m.text.trim_end(),
        e.text.trim_end(),
        "{}: the text part, links intact",
        t.name()
    );
    assert!(
        m.html.contains("Hello <b>Zoë</b> ✓"),
        "{}: the HTML part: {}",
        t.name(),
        m.html
    );
    assert_eq!(
        m.message_id.trim_matches(['<', '>']),
        e.message_id.trim_matches(['<', '>']),
        "{}: our Message-ID",
        t.name()
    );
}

#[tokio::test]
async fn the_outbox_transport_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let t = Outbox::new(dir.path().join("outbox"));
    let path = dir.path().join("outbox");
    conformance(&t, async |to: &str| {
        let mut out = Vec::new();
        for f in std::fs::read_dir(&path).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                let m: OutboxMessage = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                if m.to == to {
                    let eml = std::fs::read_to_string(p.with_extension("eml")).unwrap();
                    assert!(
                        eml.contains(&format!("Message-ID: {}", m.message_id)),
                        "{eml}"
                    );
                    out.push(Received {
                        subject: m.subject,
                        text: m.text,
                        html: m.html,
                        message_id: m.message_id,
                    });
                }
            }
        }
        out
    })
    .await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in std::fs::read_dir(&path).unwrap() {
            let mode = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "a delivered link works: owner-only");
        }
    }
    // A folder that cannot be made is a retryable failure, not a panic.
    let blocked = Outbox::new(
        dir.path()
            .join("outbox")
            .join("msg_conformance_x.json")
            .join("sub"),
    );
    std::fs::write(
        dir.path().join("outbox").join("msg_conformance_x.json"),
        b"{}",
    )
    .unwrap();
    assert!(matches!(
        blocked.send(&envelope("x@example.com")).await,
        Err(TransportError::Retryable { .. })
    ));
    assert!(blocked.check().await.is_err());
}

#[tokio::test]
async fn the_smtp_transport_conforms_against_a_real_smtp_server() {
    let Some((smtp, api)) = mail::smtp_server() else {
        return;
    };
    let t = Smtp::new(&smtp, 4, Duration::from_secs(10)).unwrap();
    conformance(&t, async |to: &str| {
        mail::maildev_wait(&api, to, 1)
            .await
            .into_iter()
            .map(|m| Received {
                subject: m["subject"].as_str().unwrap_or_default().into(),
                text: m["text"].as_str().unwrap_or_default().into(),
                html: m["html"].as_str().unwrap_or_default().into(),
                message_id: m["headers"]["message-id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            })
            .collect()
    })
    .await;
    // Nobody listening: a retryable failure.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Smtp::new(
        &format!("smtp://127.0.0.1:{port}"),
        1,
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(
        dead.send(&envelope("x@example.com")).await,
        Err(TransportError::Retryable { .. })
    ));
    assert!(dead.check().await.is_err());
}

#[tokio::test]
async fn the_resend_transport_conforms_against_a_stand_in_checking_the_documented_request() {
    let r = ResendStandIn::start().await;
    let t = Resend::new(r.url.clone(), r.key.clone().into(), Duration::from_secs(10)).unwrap();
    let seen = r.clone();
    conformance(&t, async |to: &str| {
        seen.delivered()
            .into_iter()
            .filter(|(_, b)| b["to"][0] == to)
            .map(|(_, b)| Received {
                subject: b["subject"].as_str().unwrap().into(),
                text: b["text"].as_str().unwrap().into(),
                html: b["html"].as_str().unwrap().into(),
                message_id: b["headers"]["Message-ID"].as_str().unwrap().into(),
            })
            .collect()
    })
    .await;
    assert_eq!(r.problems(), Vec::<String>::new());
    let first = &r.requests()[0];
    assert_eq!(
        first.idempotency_key.as_deref(),
        Some(envelope(first.body["to"][0].as_str().unwrap()).id.as_str())
    );
    assert_eq!(
        first.body["tags"],
        serde_json::json!([{"name": "template", "value": "render_complete"}])
    );

    // A retried send (the same message id) is delivered once.
    let to = mail::unique_address("again");
    let e = envelope(&to);
    let a = t.send(&e).await.unwrap();
    let b = t.send(&e).await.unwrap();
    assert_eq!(a, b, "the same id answered");
    assert_eq!(
        r.delivered()
            .iter()
            .filter(|(_, b)| b["to"][0] == to.as_str())
            .count(),
        1
    );

    // 429 with Retry-After is waited out within the attempt, then delivered once.
    r.script(vec![ResendScript::TooMany(1)]);
    let to = mail::unique_address("limited");
    t.send(&envelope(&to))
        .await
        .expect("delivered after the wait");
    assert_eq!(
        r.delivered()
            .iter()
            .filter(|(_, b)| b["to"][0] == to.as_str())
            .count(),
        1
    );
    // 5xx is retryable; another 4xx is permanent with Resend's message.
    r.script(vec![ResendScript::Unavailable]);
    assert!(matches!(
        t.send(&envelope(&mail::unique_address("down"))).await,
        Err(TransportError::Retryable { .. })
    ));
    let wrong_key = Resend::new(
        r.url.clone(),
        "re_wrong_key_000".to_owned().into(),
        Duration::from_secs(5),
    )
    .unwrap();
    // A key problem keeps messages waiting (retryable) until an operator fixes it.
    match wrong_key
        .send(&envelope(&mail::unique_address("key")))
        .await
    {
        Err(TransportError::Retryable { message, .. }) => {
            assert!(message.contains("missing_api_key"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // A request Resend refuses (here: no valid recipient) fails for good with its message.
    let mut bad = envelope(&mail::unique_address("bad"));
    bad.to = "nobody".into();
    match t.send(&bad).await {
        Err(TransportError::Permanent { message }) => {
            assert!(message.contains("validation_error"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Nobody listening: retryable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Resend::new(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        "re_x_0000000".to_owned().into(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(matches!(
        dead.send(&envelope("x@example.com")).await,
        Err(TransportError::Retryable { .. })
    ));
}
