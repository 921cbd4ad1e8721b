//! Each route refuses the roles it should.

use airwave_api::{ApprovalIn, AssetIn, AssetType, CampaignIn, Role};
use airwave_tests::TestApp;

fn asset_in(client_id: &str) -> AssetIn {
    AssetIn {
        client_id: client_id.into(),
        type_: AssetType::Text,
        name: "Copy".into(),
        metadata: Default::default(),
    }
}

#[tokio::test]
async fn members_see_only_their_own_clients() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, bob) = app.member("bob@example.com").await;
    let acme = ada.create_client("Acme").await.unwrap();
    let asset = ada.create_asset(&asset_in(&acme.id)).await.unwrap();
    let execution = crate::journey::setup_execution(&ada).await;

    assert_eq!(
        bob.get_client(&acme.id).await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(
        bob.get_asset(&asset.id).await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(
        bob.get_execution(&execution).await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(
        bob.create_asset(&asset_in(&acme.id))
            .await
            .unwrap_err()
            .code(),
        Some("not_found")
    );
    assert_eq!(
        bob.request_approval(&execution, &ApprovalIn::default())
            .await
            .unwrap_err()
            .code(),
        Some("not_found")
    );
    assert!(bob.list_clients().await.unwrap().items.is_empty());
    assert!(bob.list_assets("").await.unwrap().items.is_empty());

    // Once added, bob sees and works on the client.
    ada.invite_member(&acme.id, "bob@example.com")
        .await
        .unwrap();
    let mail = app.last_email_to("bob@example.com").await.unwrap();
    bob.accept_invite(&airwave_tests::token_in(&mail))
        .await
        .unwrap();
    assert_eq!(bob.get_client(&acme.id).await.unwrap().id, acme.id);
    bob.create_asset(&asset_in(&acme.id)).await.unwrap();
}

#[tokio::test]
async fn support_and_operators_read_everything_but_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let acme = ada.create_client("Acme").await.unwrap();
    let asset = ada.create_asset(&asset_in(&acme.id)).await.unwrap();
    for (email, role) in [
        ("sup@example.com", Role::Support),
        ("op@example.com", Role::Operator),
    ] {
        let (_, staff) = app.user_with_role(email, role).await;
        // The new account's Welcome is recorded by an event consumer: let it land first, so the
        // snapshot only moves if a request writes.
        app.mail_to(email, "welcome")
            .await
            .expect("the welcome mail");
        app.settle_mail().await;
        assert_eq!(staff.get_client(&acme.id).await.unwrap().id, acme.id);
        assert_eq!(staff.get_asset(&asset.id).await.unwrap().id, asset.id);
        assert_eq!(staff.list_clients().await.unwrap().items.len(), 1);
        let before = app.db.snapshot().await;
        assert_eq!(
            staff.create_client("Theirs").await.unwrap_err().code(),
            Some("forbidden"),
            "{role}"
        );
        assert_eq!(
            staff
                .create_asset(&asset_in(&acme.id))
                .await
                .unwrap_err()
                .code(),
            Some("forbidden"),
            "{role}"
        );
        assert_eq!(
            staff.delete_asset(&asset.id).await.unwrap_err().code(),
            Some("forbidden"),
            "{role}"
        );
        assert_eq!(
            staff
                .create_campaign(&CampaignIn {
                    client_id: acme.id.clone(),
                    name: "x".into(),
                    description: None
                })
                .await
                .unwrap_err()
                .code(),
            Some("forbidden")
        );
        assert_eq!(
            staff.list_users().await.unwrap_err().code(),
            Some("forbidden"),
            "{role}"
        );
        assert_eq!(app.db.snapshot().await, before, "{role} changed something");
    }
}

#[tokio::test]
async fn only_admins_manage_users() {
    let app = TestApp::spawn().await;
    let (ada_user, ada) = app.member("ada@example.com").await;
    assert_eq!(
        ada.list_users().await.unwrap_err().code(),
        Some("forbidden")
    );
    assert_eq!(
        ada.set_user_role(&ada_user.id, Role::Admin)
            .await
            .unwrap_err()
            .code(),
        Some("forbidden")
    );
    let (_, root) = app.user_with_role("root@example.com", Role::Admin).await;
    assert_eq!(root.list_users().await.unwrap().items.len(), 2);
    assert_eq!(
        root.set_user_role(&ada_user.id, Role::Support)
            .await
            .unwrap()
            .role,
        Role::Support
    );
    assert_eq!(
        ada.me().await.unwrap().role,
        Role::Support,
        "a role change applies to existing sessions"
    );
}

#[tokio::test]
async fn admins_work_on_any_client() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let acme = ada.create_client("Acme").await.unwrap();
    let (_, root) = app.user_with_role("root@example.com", Role::Admin).await;
    root.create_asset(&asset_in(&acme.id)).await.unwrap();
}

#[tokio::test]
async fn every_protected_route_refuses_anonymous_callers() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app
        .http()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("security").is_none() {
                continue;
            }
            let url = app.url(&crate::bad_input::fill_path_with_ids(path));
            let resp = app
                .http()
                .request(method.to_uppercase().parse().unwrap(), url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 401, "{method} {path}");
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} protected operations found");
}
