use airwave_api::{ApiTokenIn, RegisterIn, Role};
use airwave_tests::{token_in, TestApp, PASSWORD};

#[tokio::test]
async fn register_login_me_logout() {
    let app = TestApp::spawn().await;
    let (user, client) = app.member("ada@example.com").await;
    assert_eq!(user.role, Role::Member);
    let me = client.me().await.unwrap();
    assert_eq!(me.email, "ada@example.com");
    client.logout().await.unwrap();
    assert_eq!(
        client.me().await.unwrap_err().code(),
        Some("unauthenticated")
    );
}

#[tokio::test]
async fn emails_are_case_insensitive_and_unique() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    let again = RegisterIn {
        email: "ADA@Example.com".into(),
        password: "another long passphrase".into(),
        name: "Ada".into(),
    };
    // Accepted (nothing revealed), but no second account and no confirmation link.
    app.api.register(&again).await.unwrap();
    let mail = app.last_email_to("ada@example.com").await.unwrap();
    assert!(mail.contains("already has one"), "{mail}");
    assert!(!mail.contains("token="), "{mail}");
    assert_eq!(app.db.count("users").await, 1);
    assert!(app.api.login("ADA@EXAMPLE.COM", PASSWORD).await.is_ok());
    assert!(app
        .api
        .login("ada@example.com", "another long passphrase")
        .await
        .is_err());
}

#[tokio::test]
async fn weak_passwords_and_bad_emails_are_refused_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let before = app.db.snapshot().await;
    let weak = RegisterIn {
        email: "ada@example.com".into(),
        password: "short".into(),
        name: "Ada".into(),
    };
    assert_eq!(
        app.api.register(&weak).await.unwrap_err().code(),
        Some("weak_password")
    );
    let bad = RegisterIn {
        email: "not-an-email".into(),
        password: PASSWORD.into(),
        name: "Ada".into(),
    };
    assert_eq!(
        app.api.register(&bad).await.unwrap_err().code(),
        Some("invalid_email")
    );
    let blank = RegisterIn {
        email: "ada@example.com".into(),
        password: PASSWORD.into(),
        name: "  ".into(),
    };
    assert_eq!(
        app.api.register(&blank).await.unwrap_err().code(),
        Some("validation_failed")
    );
    assert_eq!(app.db.snapshot().await, before);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    let wrong = app
        .api
        .login("ada@example.com", "wrong password!")
        .await
        .unwrap_err();
    let unknown = app
        .api
        .login("nobody@example.com", "wrong password!")
        .await
        .unwrap_err();
    let (airwave_api::ClientError::Api(a), airwave_api::ClientError::Api(b)) = (wrong, unknown)
    else {
        panic!("not problems")
    };
    assert_eq!(
        (a.status, &a.code, &a.detail),
        (b.status, &b.code, &b.detail)
    );
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn repeated_failures_lock_the_address_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    for _ in 0..5 {
        assert_eq!(
            app.api
                .login("ada@example.com", "wrong password!")
                .await
                .unwrap_err()
                .code(),
            Some("unauthenticated")
        );
    }
    let resp = app
        .http()
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // An unknown address locks the same way, so lockout does not reveal who has an account.
    for _ in 0..5 {
        let _ = app.api.login("nobody@example.com", "wrong password!").await;
    }
    assert_eq!(
        app.api
            .login("nobody@example.com", "wrong password!")
            .await
            .unwrap_err()
            .code(),
        Some("too_many_attempts")
    );
    // When the lock has run out, the right password works again and clears the count.
    app.db
        .execute("UPDATE login_throttle SET locked_until = NULL, failures = 0")
        .await;
    assert!(app.api.login("ada@example.com", PASSWORD).await.is_ok());
}

#[tokio::test]
async fn password_reset_end_to_end() {
    let app = TestApp::spawn().await;
    let (_, old_session) = app.member("ada@example.com").await;
    app.api
        .request_password_reset("ada@example.com")
        .await
        .unwrap();
    let mail = app
        .last_email_to("ada@example.com")
        .await
        .expect("a reset e-mail in the outbox");
    assert!(
        mail.contains(&format!("{}reset-password?token=", app.base)),
        "{mail}"
    );
    let token = token_in(&mail);
    // The stored token is a hash: the database never holds the link's secret.
    assert!(app
        .db
        .text(
            "SELECT id FROM password_resets WHERE token_hash = $1",
            &token
        )
        .await
        .is_none());

    let new_password = "a brand new passphrase";
    app.api
        .confirm_password_reset(&token, new_password)
        .await
        .unwrap();
    assert!(app.api.login("ada@example.com", new_password).await.is_ok());
    assert_eq!(
        app.api
            .login("ada@example.com", PASSWORD)
            .await
            .unwrap_err()
            .code(),
        Some("unauthenticated")
    );
    // Old sessions end with the reset, and the link works once.
    assert_eq!(
        old_session.me().await.unwrap_err().code(),
        Some("unauthenticated")
    );
    assert_eq!(
        app.api
            .confirm_password_reset(&token, "yet another passphrase")
            .await
            .unwrap_err()
            .code(),
        Some("invalid_token")
    );
}

#[tokio::test]
async fn a_reset_request_for_an_unknown_address_answers_202_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let resp = app
        .http()
        .post(app.url("/api/auth/password-reset"))
        .json(&serde_json::json!({"email": "nobody@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(app.db.count("emails").await, 0);
}

#[tokio::test]
async fn an_expired_reset_link_is_refused() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    app.api
        .request_password_reset("ada@example.com")
        .await
        .unwrap();
    let token = token_in(&app.last_email_to("ada@example.com").await.unwrap());
    app.db
        .execute("UPDATE password_resets SET expires_at = created_at")
        .await;
    assert_eq!(
        app.api
            .confirm_password_reset(&token, "a brand new passphrase")
            .await
            .unwrap_err()
            .code(),
        Some("invalid_token")
    );
}

#[tokio::test]
async fn api_tokens_are_shown_once_stored_hashed_and_revocable() {
    let app = TestApp::spawn().await;
    let (_, session) = app.member("ada@example.com").await;
    let created = session
        .create_token(&ApiTokenIn {
            name: "console".into(),
            role: None,
            expires_in_days: Some(30),
        })
        .await
        .unwrap();
    assert!(created.token.starts_with("awt_"));
    assert_eq!(created.info.role, Role::Member);
    assert!(
        app.db
            .text(
                "SELECT id FROM api_tokens WHERE token_hash = $1",
                &created.token
            )
            .await
            .is_none(),
        "stored in clear"
    );

    let console = app.api.with_token(created.token.clone());
    assert_eq!(console.me().await.unwrap().email, "ada@example.com");
    let listed = session.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some(), "last use recorded");
    assert!(!serde_json::to_string(&listed)
        .unwrap()
        .contains(&created.token));

    session.revoke_token(&created.info.id).await.unwrap();
    assert_eq!(
        console.me().await.unwrap_err().code(),
        Some("unauthenticated")
    );
}

#[tokio::test]
async fn a_token_never_carries_more_than_its_users_role() {
    let app = TestApp::spawn().await;
    let (_, member) = app.member("ada@example.com").await;
    let err = member
        .create_token(&ApiTokenIn {
            name: "x".into(),
            role: Some(Role::Admin),
            expires_in_days: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));

    // A token minted while admin stops working when the user is demoted.
    let (_, root) = app.user_with_role("root@example.com", Role::Admin).await;
    let (op_user, op) = app.user_with_role("op@example.com", Role::Admin).await;
    let op_token = op
        .create_token(&ApiTokenIn {
            name: "x".into(),
            role: None,
            expires_in_days: None,
        })
        .await
        .unwrap();
    root.set_user_role(&op_user.id, Role::Operator)
        .await
        .unwrap();
    assert_eq!(
        app.api
            .with_token(op_token.token)
            .me()
            .await
            .unwrap_err()
            .code(),
        Some("unauthenticated")
    );
}

#[tokio::test]
async fn the_cli_creates_an_admin_and_issues_a_token_printed_alone() {
    let app = TestApp::spawn().await;
    let out = app
        .cli(
            &[
                "admin",
                "create-user",
                "--email",
                "root@example.com",
                "--role",
                "admin",
            ],
            &[],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = app
        .cli(
            &[
                "admin",
                "issue-token",
                "--email",
                "root@example.com",
                "--name",
                "console",
            ],
            &[],
            None,
        )
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end();
    assert!(
        token.starts_with("awt_") && !token.contains(char::is_whitespace),
        "{stdout:?}"
    );
    let me = app.api.with_token(token).me().await.unwrap();
    assert_eq!(
        (me.email.as_str(), me.role),
        ("root@example.com", Role::Admin)
    );
    // Every sensitive action left an audit entry.
    let actions = app
        .db
        .texts("SELECT action FROM audit_log ORDER BY id")
        .await;
    for a in ["user.create", "token.create"] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted() {
    let app = TestApp::spawn().await;
    let (me, root) = app.user_with_role("root@example.com", Role::Admin).await;
    assert_eq!(
        root.set_user_role(&me.id, Role::Member)
            .await
            .unwrap_err()
            .code(),
        Some("last_admin")
    );
    let audit = app
        .db
        .texts("SELECT action FROM audit_log WHERE action = 'user.role_change'")
        .await;
    assert!(audit.is_empty());
}
