//! `/api/ops/queues…`: operators see and steer the job queues; nobody else may.

use airwave_api::{ExecutionIn, ExecutionStatus, JobStateOut, PurgeIn, RetryDeadIn, Role};
use airwave_tests::{finished_execution, TestApp};
use serde_json::json;

async fn execution(ada: &airwave_api::ApiClient, template: serde_json::Value) -> String {
    let client = ada.create_client("Acme").await.unwrap();
    let matrix = airwave_tests::matrix_for(ada, &client.id, template).await;
    ada.create_execution(&matrix, &ExecutionIn::default())
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn only_operators_and_admins_see_the_queues() {
    let app = TestApp::spawn().await;
    let (_, member) = app.member("ada@example.com").await;
    let (_, support) = app.user_with_role("sup@example.com", Role::Support).await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    for c in [&member, &support] {
        assert_eq!(c.list_queues().await.unwrap_err().code(), Some("forbidden"));
        assert_eq!(
            c.queue_action("render", "pause").await.unwrap_err().code(),
            Some("forbidden")
        );
    }
    let queues = op.list_queues().await.unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    for q in ["render", "email", "webhook", "cleanup", "analytics"] {
        assert!(names.contains(&q), "{q} missing from {names:?}");
    }
}

#[tokio::test]
async fn a_failing_render_shows_in_the_dead_letters_by_fingerprint_and_can_be_retried() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    let exe = execution(
        &ada,
        json!({"layers": [{"type": "text", "text": "{{missing}}", "x": 1, "y": 1}]}),
    )
    .await;
    assert_eq!(
        finished_execution(&ada, &exe).await.status,
        ExecutionStatus::Failed
    );

    let groups = airwave_tests::eventually("the job in the dead letters", || async {
        let g = op.dead_groups("render").await.unwrap();
        (!g.is_empty()).then_some(g)
    })
    .await;
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].count, groups[0].kind.as_str()), (1, "render"));
    assert!(
        groups[0].sample_error.contains("missing"),
        "{}",
        groups[0].sample_error
    );

    let dead = op
        .list_jobs(
            "render",
            &format!("state=dead&fingerprint={}", groups[0].fingerprint),
        )
        .await
        .unwrap();
    assert_eq!(dead.items.len(), 1);
    let detail = op.get_job(&dead.items[0].id).await.unwrap();
    assert_eq!(detail.job.payload["execution_id"], exe);
    assert_eq!(detail.attempts.len(), 1);
    assert_eq!(detail.attempts[0].outcome, "failed");

    let dry = op
        .retry_dead(
            "render",
            &RetryDeadIn {
                fingerprint: Some(groups[0].fingerprint.clone()),
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert_eq!((dry.count, dry.dry_run), (1, true));
    assert_eq!(
        op.list_jobs("render", "state=dead")
            .await
            .unwrap()
            .items
            .len(),
        1,
        "a dry run changes nothing"
    );
    let done = op
        .retry_dead(
            "render",
            &RetryDeadIn {
                fingerprint: Some(groups[0].fingerprint.clone()),
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.count, 1);
    let actions = app
        .db
        .texts("SELECT action FROM audit_log WHERE action LIKE 'queue.%'")
        .await;
    assert_eq!(actions, ["queue.dead_retry"]);
}

#[tokio::test]
async fn a_paused_queue_holds_renders_until_resumed() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    assert!(op.queue_action("render", "pause").await.unwrap().paused);
    let exe = execution(&ada, json!({})).await;
    // The job reaches the queue (a real signal: the queue's counts), and stays there.
    let mut waiting = 0;
    for _ in 0..400 {
        waiting = op
            .list_queues()
            .await
            .unwrap()
            .into_iter()
            .find(|q| q.name == "render")
            .unwrap()
            .counts
            .waiting;
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(waiting, 1);
    assert_eq!(
        ada.get_execution(&exe).await.unwrap().status,
        ExecutionStatus::Queued
    );
    assert!(!op.queue_action("render", "resume").await.unwrap().paused);
    assert_eq!(
        finished_execution(&ada, &exe).await.status,
        ExecutionStatus::Completed
    );

    let job = airwave_tests::eventually("the render job to complete", || async {
        op.list_jobs("render", "state=completed")
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(job.state, JobStateOut::Completed);
    let purged = op
        .purge_completed(
            "render",
            &PurgeIn {
                older_than_hours: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(purged.count, 1);
    assert!(op
        .list_jobs("render", "state=completed")
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn a_running_or_finished_job_cannot_be_discarded_or_promoted() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    let exe = execution(&ada, json!({})).await;
    finished_execution(&ada, &exe).await;
    let job = airwave_tests::eventually("the render job to complete", || async {
        op.list_jobs("render", "state=completed")
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        op.job_action(&job.id, "promote").await.unwrap_err().code(),
        Some("job_state")
    );
    assert_eq!(
        op.job_action(&job.id, "cancel").await.unwrap_err().code(),
        Some("job_state")
    );
    op.discard_job(&job.id).await.unwrap();
    assert_eq!(
        op.get_job(&job.id).await.unwrap_err().code(),
        Some("not_found")
    );
}
