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
            "client_invite"
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
