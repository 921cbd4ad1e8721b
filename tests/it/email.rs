//! E-mail templates and their previews, for support staff and above.

use airwave_api::Role;
use airwave_tests::TestApp;

#[tokio::test]
async fn support_lists_the_templates_and_previews_each_in_html_and_text() {
    let app = TestApp::spawn_with(&[("AIRWAVE_EMAIL_PRODUCT_NAME", "AIrWAVE Studio")]).await;
    app.user_with_role("sup@example.com", Role::Support).await;
    let token = app.login("sup@example.com").await.token;
    let http = app.http();
    let list: Vec<airwave_api::EmailTemplateOut> = http
        .get(app.url("/api/ops/emails/templates"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "client_approval",
            "render_complete",
            "welcome",
            "password_reset",
            "system_alert",
            "confirm_registration",
            "account_exists",
            "client_invite",
            "webhook_disabled"
        ]
    );
    let welcome = list.iter().find(|t| t.name == "welcome").unwrap();
    assert_eq!(
        welcome.sample_subject, "Welcome to AIrWAVE Studio",
        "branding from configuration"
    );
    for t in &list {
        let html = http
            .get(app.url(&format!("/api/ops/emails/templates/{}/preview", t.name)))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(html.status(), 200);
        assert!(html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let csp = html.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("sandbox") && csp.contains("default-src 'none'"),
            "{csp}"
        );
        let body = html.text().await.unwrap();
        assert!(
            body.contains("AIrWAVE Studio") && body.contains("<table"),
            "{}",
            t.name
        );
        let text = http
            .get(app.url(&format!(
                "/api/ops/emails/templates/{}/preview?format=text",
                t.name
            )))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let body = text.text().await.unwrap();
        assert!(
            !body.contains('<') && !body.contains("{{"),
            "{}: {body}",
            t.name
        );
    }
    let missing = http
        .get(app.url("/api/ops/emails/templates/nope/preview"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad = http
        .get(app.url("/api/ops/emails/templates/welcome/preview?format=pdf"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn members_see_no_templates() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    let token = app.login("ada@example.com").await.token;
    let r = app
        .http()
        .get(app.url("/api/ops/emails/templates"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn a_support_link_that_is_not_a_web_url_is_refused_at_start() {
    let out = std::process::Command::new(airwave_tests::server_bin())
        .args(["config", "check"])
        .env_clear()
        .env("AIRWAVE_EMAIL_SUPPORT_URL", "javascript:alert(1)")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AIRWAVE_EMAIL_SUPPORT_URL"), "{err}");
}

use airwave_api::{ApprovalIn, RegisterIn};
use airwave_tests::mail::{self, ResendScript, ResendStandIn};
use airwave_tests::token_in;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

/// Registers `to` through the mails maildev received, and logs in.
async fn register_over_smtp(app: &TestApp, api: &url::Url, to: &str) -> airwave_api::ApiClient {
    app.api
        .register(&RegisterIn {
            email: to.into(),
            password: PASSWORD.into(),
            name: "Zoë Example".into(),
        })
        .await
        .unwrap();
    let got = mail::maildev_wait(api, to, 1).await;
    assert_eq!(got.len(), 1, "one confirmation mail");
    let confirm = got[0]["text"].as_str().unwrap();
    assert!(got[0]["html"]
        .as_str()
        .unwrap()
        .contains("Confirm and create my account"));
    app.api
        .confirm_registration(&token_in(confirm), PASSWORD)
        .await
        .unwrap();
    let login = app.api.login(to, PASSWORD).await.unwrap();
    app.api.with_token(login.token)
}

fn subjects(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn over_smtp_welcome_reset_and_approval_mails_arrive_with_both_parts_and_links_that_work_once(
) {
    let Some((smtp, api)) = mail::smtp_server() else {
        return;
    };
    let app = TestApp::spawn_with(&[("SMTP_URL", smtp.as_str())]).await;
    let to = mail::unique_address("zoe");
    register_over_smtp(&app, &api, &to).await;

    // Registering sends Welcome (an event consumer), HTML and text.
    let got = mail::maildev_wait(&api, &to, 2).await;
    let welcome = got
        .iter()
        .find(|m| m["subject"] == "Welcome to AIrWAVE")
        .unwrap_or_else(|| panic!("{:?}", subjects(&got)));
    assert!(welcome["text"].as_str().unwrap().contains("Zoë Example"));
    assert!(
        welcome["html"].as_str().unwrap().contains("<table"),
        "responsive table-based HTML"
    );

    // A reset mail arrives; its link works once.
    app.api.request_password_reset(&to).await.unwrap();
    let got = mail::maildev_wait(&api, &to, 3).await;
    let reset = got
        .iter()
        .find(|m| m["subject"] == "Reset your AIrWAVE password")
        .unwrap_or_else(|| panic!("{:?}", subjects(&got)));
    let token = token_in(reset["text"].as_str().unwrap());
    assert!(
        reset["html"].as_str().unwrap().contains(&token),
        "the same link in the HTML part"
    );
    app.api
        .confirm_password_reset(&token, "a brand new passphrase 42")
        .await
        .unwrap();
    let again = app
        .api
        .confirm_password_reset(&token, "yet another passphrase 43")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("invalid_token"), "{again:?}");

    // The reset ended every session: log in with the new password.
    let zoe = app.api.with_token(
        app.api
            .login(&to, "a brand new passphrase 42")
            .await
            .unwrap()
            .token,
    );
    // An approval request mails the reviewer approve and reject links.
    let execution = crate::journey::setup_execution(&zoe).await;
    let reviewer = mail::unique_address("reviewer");
    zoe.request_approval(
        &execution,
        &ApprovalIn {
            reviewer_email: Some(reviewer.clone()),
            note: Some("<b>final</b> cut".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let got = mail::maildev_wait(&api, &reviewer, 1).await;
    assert_eq!(got.len(), 1);
    let text = got[0]["text"].as_str().unwrap();
    let html = got[0]["html"].as_str().unwrap();
    assert!(
        text.contains("decision=approve") && text.contains("decision=reject"),
        "{text}"
    );
    assert!(
        html.contains("&lt;b&gt;final&lt;") && !html.contains("<b>final"),
        "the note is escaped"
    );
    let view = app.api.view_approval(&token_in(text)).await.unwrap();
    assert_eq!(view.execution.id, execution);
    // The log has every message sent by SMTP with its Message-ID, as maildev saw it.
    let recorded = app
        .db
        .text(
            "SELECT message_id FROM emails WHERE to_address = $1 AND status = 'sent'",
            &reviewer,
        )
        .await
        .unwrap();
    assert_eq!(
        got[0]["headers"]["message-id"].as_str(),
        Some(recorded.as_str())
    );
}

#[tokio::test]
async fn with_smtp_down_the_send_is_retried_and_the_mail_arrives_exactly_once_when_it_returns() {
    let Some((smtp, api)) = mail::smtp_server() else {
        return;
    };
    let target: std::net::SocketAddr = url::Url::parse(&smtp)
        .unwrap()
        .socket_addrs(|| None)
        .unwrap()[0];
    let relay = mail::Relay::start(target, false).await;
    let app = TestApp::spawn_with(&[
        ("SMTP_URL", format!("smtp://{}", relay.addr).as_str()),
        ("AIRWAVE_QUEUE_EMAIL_BACKOFF_BASE_MS", "200"),
        ("AIRWAVE_QUEUE_EMAIL_BACKOFF_CAP_MS", "1000"),
    ])
    .await;
    let to = mail::unique_address("outage");
    app.api
        .register(&RegisterIn {
            email: to.clone(),
            password: PASSWORD.into(),
            name: "Outage".into(),
        })
        .await
        .unwrap();
    // The first attempt fails and is recorded, then the message waits for its retry.
    airwave_tests::eventually("a failed attempt", || async {
        (app.db
            .count_where("email_attempts", "outcome = 'retry'")
            .await
            >= 1)
            .then_some(())
    })
    .await;
    let status = app
        .db
        .text("SELECT status FROM emails WHERE to_address = $1", &to)
        .await;
    assert_eq!(status.as_deref(), Some("queued"));
    assert!(mail::maildev_messages(&api, &to).await.is_empty());
    relay.set_up(true);
    let got = mail::maildev_wait(&api, &to, 1).await;
    assert_eq!(got.len(), 1);
    // Once the message is no longer queued its job is done: no attempt can follow.
    app.settle_mail().await;
    assert_eq!(
        mail::maildev_messages(&api, &to).await.len(),
        1,
        "exactly once"
    );
    assert_eq!(
        app.db
            .text("SELECT status FROM emails WHERE to_address = $1", &to)
            .await
            .as_deref(),
        Some("sent")
    );
}

#[tokio::test]
async fn through_resend_a_429_is_waited_out_and_the_message_delivered_once() {
    let resend = ResendStandIn::start().await;
    resend.script(vec![ResendScript::TooMany(1)]);
    let app = TestApp::spawn_with(&[
        ("RESEND_API_KEY", resend.key.as_str()),
        ("RESEND_API_URL", resend.url.as_str()),
    ])
    .await;
    let to = "ada@example.com";
    app.api
        .register(&RegisterIn {
            email: to.into(),
            password: PASSWORD.into(),
            name: "Ada".into(),
        })
        .await
        .unwrap();
    app.settle_mail().await;
    let delivered = resend.delivered();
    assert_eq!(delivered.len(), 1, "{:?}", resend.requests());
    let (id, body) = &delivered[0];
    assert_eq!(body["to"], serde_json::json!([to]));
    assert_eq!(body["tags"][0]["value"], "confirm_registration");
    assert!(body["text"].as_str().unwrap().contains("token=reg_"));
    assert_eq!(
        resend
            .requests()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>(),
        [429, 200]
    );
    assert_eq!(resend.problems(), Vec::<String>::new());
    let (status, provider): (String, String) = match &app.db {
        airwave_tests::TestDb::Sqlite(p) => {
            sqlx::query_as("SELECT status, provider_id FROM emails")
                .fetch_one(p)
                .await
                .unwrap()
        }
        airwave_tests::TestDb::Postgres(p) => {
            sqlx::query_as("SELECT status, provider_id FROM emails")
                .fetch_one(p)
                .await
                .unwrap()
        }
    };
    assert_eq!((status.as_str(), provider.as_str()), ("sent", id.as_str()));
}

#[tokio::test]
async fn after_a_reset_no_column_of_the_email_log_holds_a_token_that_works() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    app.api
        .request_password_reset("ada@example.com")
        .await
        .unwrap();
    let delivered = app.last_email_to("ada@example.com").await.unwrap();
    let real = token_in(&delivered);
    let rows = app.db.dump("emails").await;
    let everything = rows.join("\n");
    assert!(
        !everything.contains(&real),
        "the delivered token is not stored"
    );
    assert!(
        everything.contains("[redacted]"),
        "the log shows where the token was"
    );
    // Every token-like word anywhere in the table fails to reset the password.
    let mut tried = 0;
    for word in
        everything.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    {
        if ["rst_", "reg_", "inv_"].iter().any(|p| word.starts_with(p)) {
            tried += 1;
            assert!(
                app.api
                    .confirm_password_reset(word, "a brand new passphrase 42")
                    .await
                    .is_err(),
                "{word}"
            );
        }
    }
    eprintln!("tried {tried} token-like words");
    // The delivered one works (the test would prove nothing otherwise).
    app.api
        .confirm_password_reset(&real, "a brand new passphrase 42")
        .await
        .unwrap();
}

#[tokio::test]
async fn support_finds_a_mail_resends_it_and_a_suppressed_address_needs_a_reason() {
    let app = TestApp::spawn().await;
    let (_, sup) = app.user_with_role("sup@example.com", Role::Support).await;
    let (_, member) = app.member("client@example.com").await;
    app.api
        .request_password_reset("client@example.com")
        .await
        .unwrap();
    app.settle_mail().await;
    let http = app.http();
    let token = app.login("sup@example.com").await.token;
    let get = |path: String| {
        let http = http.clone();
        let token = token.clone();
        let url = app.url(&path);
        async move { http.get(url).bearer_auth(token).send().await.unwrap() }
    };
    let page: airwave_api::Page<airwave_api::EmailOut> =
        get("/api/ops/emails?to=CLIENT@example&template=password_reset".into())
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(page.items.len(), 1, "{page:?}");
    let original = &page.items[0];
    assert_eq!(original.status, airwave_api::EmailStatus::Sent);
    let detail: airwave_api::EmailDetailOut = get(format!("/api/ops/emails/{}", original.id))
        .await
        .json()
        .await
        .unwrap();
    assert!(detail.text.contains("token=[redacted]"), "{}", detail.text);
    assert!(detail.html.as_deref().unwrap().contains("[redacted]"));
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, "sent");
    // Bad filters are 400s with a code.
    let bad = get("/api/ops/emails?status=lost".into()).await;
    assert_eq!(bad.status(), 400);

    // Resend: a new message linked to the original arrives.
    let resend = |body: Value| {
        let http = http.clone();
        let token = token.clone();
        let url = app.url(&format!("/api/ops/emails/{}/resend", original.id));
        async move {
            http.post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = resend(serde_json::json!({})).await;
    assert_eq!(r.status(), 202);
    let again: airwave_api::EmailOut = r.json().await.unwrap();
    assert_eq!(again.resend_of.as_deref(), Some(original.id.as_str()));
    app.settle_mail().await;
    assert_eq!(
        app.outbox()
            .iter()
            .filter(|m| m.to == "client@example.com" && m.template() == "password_reset")
            .count(),
        2
    );

    // Suppressed: refused without a reason, sent with one; both audited.
    let add = http
        .post(app.url("/api/ops/emails/suppressions"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"address": "Client@Example.com", "note": "asked us to stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 201);
    let refused = resend(serde_json::json!({})).await;
    assert_eq!(refused.status(), 409);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "address_suppressed");
    let reason =
        serde_json::json!({"override_suppression_reason": "the client called: wants it once"});
    assert_eq!(
        resend(reason.clone()).await.status(),
        403,
        "support cannot override the list"
    );
    app.user_with_role("ops@example.com", Role::Operator).await;
    let ops_token = app.login("ops@example.com").await.token;
    let overridden = http
        .post(app.url(&format!("/api/ops/emails/{}/resend", original.id)))
        .bearer_auth(&ops_token)
        .json(&reason)
        .send()
        .await
        .unwrap();
    assert_eq!(overridden.status(), 202);
    app.settle_mail().await;
    assert_eq!(
        app.outbox()
            .iter()
            .filter(|m| m.to == "client@example.com" && m.template() == "password_reset")
            .count(),
        3
    );
    let audited = app
        .db
        .count_where("audit_log", "action = 'email.resend'")
        .await;
    assert_eq!(audited, 2);
    assert_eq!(
        app.db
            .count_where("audit_log", "action = 'email.suppress'")
            .await,
        1
    );

    // A member sees none of it; support cannot do what is not theirs.
    let member_token = app.login("client@example.com").await.token;
    let denied = http
        .get(app.url("/api/ops/emails"))
        .bearer_auth(member_token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    drop((sup, member));
}

#[tokio::test]
async fn the_ops_stream_shows_each_message_queued_then_sent_without_its_address() {
    let app = TestApp::spawn().await;
    app.user_with_role("sup@example.com", Role::Support).await;
    let token = app.login("sup@example.com").await.token;
    let mut stream = airwave_tests::SseStream::open(&app, "/api/ops/stream", &token, Some("0"))
        .await
        .expect("support watches the stream");
    app.member("watched@example.com").await;
    app.api
        .request_password_reset("watched@example.com")
        .await
        .unwrap();
    let is_reset = |e: &airwave_tests::SseEvent, status: &str| {
        e.event == airwave_api::ops_event::EMAIL_CHANGED
            && e.json()["template"] == "password_reset"
            && e.json()["status"] == status
    };
    let wait = std::time::Duration::from_secs(30);
    let (queued, _) = stream.until(wait, |e| is_reset(e, "queued")).await;
    let (sent, _) = stream.until(wait, |e| is_reset(e, "sent")).await;
    assert_eq!(queued.json()["id"], sent.json()["id"]);
    assert_eq!(sent.json()["attempts"], 1);
    for e in [&queued, &sent] {
        assert!(
            !e.data.contains("watched@"),
            "no address on the stream: {}",
            e.data
        );
    }
}

/// A Resend webhook delivery for `provider_id`, signed by Standard Webhooks' official library
/// (under the `svix-*` names Resend uses), `age_secs` old.
fn resend_event(
    secret: &str,
    kind: &str,
    provider_id: &str,
    extra: Value,
    age_secs: i64,
) -> (reqwest::header::HeaderMap, String) {
    let mut data = json!({
        "created_at": "2026-12-02T10:00:00.000Z",
        "email_id": provider_id,
        "from": "AIrWAVE <notifications@airwave.app>",
        "to": ["someone@example.com"],
        "subject": "Hello",
    });
    if let (Some(d), Some(x)) = (data.as_object_mut(), extra.as_object()) {
        d.extend(x.clone());
    }
    let body =
        json!({"type": kind, "created_at": "2026-12-02T10:00:01.000Z", "data": data}).to_string();
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let ts = chrono::Utc::now().timestamp() - age_secs;
    let id = format!("msg_{}", ulid_like());
    let sig = wh.sign(&id, ts, body.as_bytes()).unwrap();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("svix-id", id.parse().unwrap());
    h.insert("svix-timestamp", ts.to_string().parse().unwrap());
    h.insert("svix-signature", sig.parse().unwrap());
    h.insert("content-type", "application/json".parse().unwrap());
    (h, body)
}

fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[tokio::test]
async fn resend_webhooks_signed_per_svix_mark_messages_and_fill_the_suppression_list() {
    let resend = ResendStandIn::start().await;
    // The secret as Resend shows it: whsec_ and base64 of random bytes.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let app = TestApp::spawn_with(&[
        ("RESEND_API_KEY", resend.key.as_str()),
        ("RESEND_API_URL", resend.url.as_str()),
        ("RESEND_WEBHOOK_SECRET", secret),
    ])
    .await;
    // Accounts made by the CLI: each gets its Welcome through Resend.
    for who in ["del", "bounce", "spam"] {
        app.user_with_role(&format!("{who}@example.com"), Role::Member)
            .await;
    }
    app.settle_mail().await;
    // Each Welcome is recorded by an event consumer, then sent: wait for Resend's id.
    let provider = |to: &str| {
        let db = &app.db;
        let to = to.to_owned();
        async move {
            airwave_tests::eventually("a welcome sent through Resend", || async {
                db.text(
                    "SELECT provider_id FROM emails WHERE to_address = $1 AND template = 'welcome' AND provider_id IS NOT NULL",
                    &to,
                )
                .await
            })
            .await
        }
    };
    let status = |to: &str| {
        let db = &app.db;
        let to = to.to_owned();
        async move {
            db.text(
                "SELECT status FROM emails WHERE to_address = $1 AND template = 'welcome'",
                &to,
            )
            .await
            .unwrap_or_default()
        }
    };
    let http = app.http();
    let post = |(h, body): (reqwest::header::HeaderMap, String)| {
        let http = http.clone();
        let url = app.url("/api/webhooks/resend");
        async move { http.post(url).headers(h).body(body).send().await.unwrap() }
    };

    // Delivered.
    let p = provider("del@example.com").await;
    let r = post(resend_event(secret, "email.delivered", &p, json!({}), 0)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(status("del@example.com").await, "delivered");
    // Redelivered: nothing changes; a late "delivered" after a bounce never undoes it.
    let r = post(resend_event(secret, "email.delivered", &p, json!({}), 0)).await;
    assert_eq!(r.status(), 200);

    // A permanent bounce: bounced and suppressed, with the message that caused it.
    let p = provider("bounce@example.com").await;
    let bounce = json!({"bounce": {"type": "Permanent", "subType": "General", "message": "550 no such user"}});
    assert_eq!(
        post(resend_event(secret, "email.bounced", &p, bounce, 0))
            .await
            .status(),
        200
    );
    assert_eq!(status("bounce@example.com").await, "bounced");
    assert_eq!(
        post(resend_event(secret, "email.delivered", &p, json!({}), 0))
            .await
            .status(),
        200
    );
    assert_eq!(
        status("bounce@example.com").await,
        "bounced",
        "states only move forward"
    );
    assert_eq!(
        app.db
            .text(
                "SELECT reason FROM email_suppressions WHERE address = $1",
                "bounce@example.com"
            )
            .await
            .as_deref(),
        Some("hard_bounce")
    );

    // A complaint: complained and suppressed.
    let p = provider("spam@example.com").await;
    assert_eq!(
        post(resend_event(secret, "email.complained", &p, json!({}), 0))
            .await
            .status(),
        200
    );
    assert_eq!(status("spam@example.com").await, "complained");
    assert_eq!(
        app.db
            .text(
                "SELECT reason FROM email_suppressions WHERE address = $1",
                "spam@example.com"
            )
            .await
            .as_deref(),
        Some("complaint")
    );

    // Refused: a tampered body, another secret, a stale timestamp, no signature.
    let (h, body) = resend_event(
        secret,
        "email.complained",
        &provider("del@example.com").await,
        json!({}),
        0,
    );
    let r = post((h, body.replace("complained", "bounced"))).await;
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_signature");
    let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = post(resend_event(
        other,
        "email.complained",
        &provider("del@example.com").await,
        json!({}),
        0,
    ))
    .await;
    assert_eq!(r.status(), 401);
    let r = post(resend_event(
        secret,
        "email.complained",
        &provider("del@example.com").await,
        json!({}),
        600,
    ))
    .await;
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "stale_signature");
    let r = http
        .post(app.url("/api/webhooks/resend"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        status("del@example.com").await,
        "delivered",
        "nothing refused changed anything"
    );

    // The official library accepts what it signed, and refuses the tampered body too (our
    // verification and the standard's agree).
    let (h, body) = resend_event(secret, "email.delivered", "re_1", json!({}), 0);
    let mut std_headers = reqwest::header::HeaderMap::new();
    for (from, to) in [
        ("svix-id", "webhook-id"),
        ("svix-timestamp", "webhook-timestamp"),
        ("svix-signature", "webhook-signature"),
    ] {
        std_headers.insert(to, h[from].to_str().unwrap().parse().unwrap());
    }
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    assert!(wh.verify(body.as_bytes(), &std_headers).is_ok());
    assert!(wh
        .verify(
            body.replace("delivered", "bounced").as_bytes(),
            &std_headers
        )
        .is_err());
}

#[tokio::test]
async fn without_a_webhook_secret_the_resend_webhook_is_not_there() {
    let app = TestApp::spawn().await;
    let r = app
        .http()
        .post(app.url("/api/webhooks/resend"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
