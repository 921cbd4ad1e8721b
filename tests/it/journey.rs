//! The whole path a user takes: register → log in → client → asset → campaign → matrix →
//! execution → request approval → the client approves through the link.

use airwave_api::{
    ApprovalDecisionIn, ApprovalIn, ApprovalStatus, AssetIn, AssetType, CampaignIn, Decision,
    ExecutionIn, ExecutionStatus, MatrixIn,
};
use airwave_tests::{token_in, TestApp};
use serde_json::json;

#[tokio::test]
async fn a_member_gets_an_execution_approved_through_the_link() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme Shoes").await.unwrap();
    let asset = ada
        .create_asset(&AssetIn {
            client_id: client.id.clone(),
            type_: AssetType::Image,
            name: "Logo".into(),
            metadata: json!({"description": "the red logo"})
                .as_object()
                .unwrap()
                .clone(),
        })
        .await
        .unwrap();
    assert_eq!(ada.get_asset(&asset.id).await.unwrap(), asset);
    let campaign = ada
        .create_campaign(&CampaignIn {
            client_id: client.id.clone(),
            name: "Summer".into(),
            description: None,
        })
        .await
        .unwrap();
    let template = json!({"width": 1080, "height": 1080, "layers": [{"type": "text", "text": "{{headline}}", "x": 100, "y": 540}]});
    let matrix = ada
        .create_matrix(
            &campaign.id,
            &MatrixIn {
                name: "Square".into(),
                template: template.as_object().unwrap().clone(),
            },
        )
        .await
        .unwrap();
    let execution = ada
        .create_execution(
            &matrix.id,
            &ExecutionIn {
                params: json!({"headline": "Run faster"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(execution.status, ExecutionStatus::Queued);
    assert_eq!(
        (execution.client_id.as_str(), execution.campaign_id.as_str()),
        (client.id.as_str(), campaign.id.as_str())
    );

    let created = ada
        .request_approval(
            &execution.id,
            &ApprovalIn {
                reviewer_email: Some("buyer@acme.example".into()),
                note: Some("v1".into()),
                expires_in_hours: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.approval.status, ApprovalStatus::Pending);
    assert!(
        created
            .url
            .starts_with(&format!("{}approve?token=", app.base)),
        "{}",
        created.url
    );
    // The reviewer got the same link by e-mail.
    let mail = app
        .last_email_to("buyer@acme.example")
        .await
        .expect("approval e-mail");
    assert_eq!(token_in(&mail), created.token);

    // The reviewer has no account: the link is the credential.
    let view = app.api.view_approval(&created.token).await.unwrap();
    assert_eq!(
        (view.client_name.as_str(), view.campaign_name.as_str()),
        ("Acme Shoes", "Summer")
    );
    let page = app.http().get(&created.url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Acme Shoes"));

    let decided = app
        .api
        .decide_approval(&ApprovalDecisionIn {
            token: created.token.clone(),
            decision: Decision::Approve,
            comment: Some("Ship it".into()),
        })
        .await
        .unwrap();
    assert_eq!(decided.status, ApprovalStatus::Approved);
    assert_eq!(
        ada.get_approval(&created.approval.id).await.unwrap().status,
        ApprovalStatus::Approved
    );

    // A link works once.
    let again = app
        .api
        .decide_approval(&ApprovalDecisionIn {
            token: created.token,
            decision: Decision::Reject,
            comment: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("already_decided"));

    // The worker rendered it meanwhile.
    assert_eq!(
        airwave_tests::finished_execution(&ada, &execution.id)
            .await
            .status,
        ExecutionStatus::Completed
    );

    // Every change wrote its event to the outbox, in order (the worker's own events, render.* and
    // job.*, interleave with them: see render.rs).
    let mut events = app.db.texts("SELECT type FROM events ORDER BY id").await;
    events.retain(|e| !e.starts_with("render.") && !e.starts_with("job.") && e != "email.queued");
    assert_eq!(
        events,
        [
            "user.registered",
            "client.created",
            "asset.created",
            "campaign.created",
            "matrix.created",
            "execution.created",
            "approval.requested",
            "approval.received"
        ]
    );
}

#[tokio::test]
async fn the_approval_page_form_records_a_rejection() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let execution = setup_execution(&ada).await;
    let created = ada
        .request_approval(&execution, &ApprovalIn::default())
        .await
        .unwrap();
    let resp = app
        .http()
        .post(app.url("/approve"))
        .form(&[
            ("token", created.token.as_str()),
            ("decision", "reject"),
            ("comment", "colours are off"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = ada.get_approval(&created.approval.id).await.unwrap();
    assert_eq!(
        (got.status, got.comment.as_deref()),
        (ApprovalStatus::Rejected, Some("colours are off"))
    );
}

#[tokio::test]
async fn forged_and_expired_links_are_refused() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let execution = setup_execution(&ada).await;
    let created = ada
        .request_approval(
            &execution,
            &ApprovalIn {
                expires_in_hours: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (data, sig) = created.token.split_once('.').unwrap();
    let forged = format!("{data}.{}", sig.chars().rev().collect::<String>());
    let err = app
        .api
        .decide_approval(&ApprovalDecisionIn {
            token: forged,
            decision: Decision::Approve,
            comment: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("not_found"));
    // An approval token is not a session token, and vice versa.
    assert_eq!(
        app.api
            .with_token(created.token.clone())
            .me()
            .await
            .unwrap_err()
            .code(),
        Some("unauthenticated")
    );
    let session = app.login("ada@example.com").await.token;
    let err = app
        .api
        .decide_approval(&ApprovalDecisionIn {
            token: session,
            decision: Decision::Approve,
            comment: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("not_found"));
    assert_eq!(
        ada.get_approval(&created.approval.id).await.unwrap().status,
        ApprovalStatus::Pending
    );
}

pub async fn setup_execution(c: &airwave_api::ApiClient) -> String {
    let client = c.create_client("Acme").await.unwrap();
    let matrix = airwave_tests::matrix_for(c, &client.id, json!({})).await;
    c.create_execution(&matrix, &ExecutionIn::default())
        .await
        .unwrap()
        .id
}
