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

/// Waits for the bulk job a bulk operation started and returns its result.
async fn bulk_result(
    op: &airwave_api::ApiClient,
    started: &airwave_api::BulkOut,
) -> serde_json::Value {
    assert!(!started.dry_run);
    let id = started
        .job_id
        .clone()
        .expect("a started operation names its job");
    let job = airwave_tests::eventually("the bulk job to finish", || async {
        let d = op.get_job(&id).await.unwrap();
        (d.job.state == JobStateOut::Completed).then_some(d.job)
    })
    .await;
    assert_eq!(
        (job.queue.as_str(), job.kind.as_str()),
        ("cleanup", "queue.bulk")
    );
    assert_eq!(job.progress, 100);
    job.result.expect("a finished bulk job has a result")
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
    // The audit entry was written with the job, before it ran, and names it.
    let actions = app
        .db
        .texts("SELECT action FROM audit_log WHERE action LIKE 'queue.%'")
        .await;
    assert_eq!(actions, ["queue.dead_retry"]);
    let detail = app
        .db
        .texts("SELECT CAST(detail AS TEXT) FROM audit_log WHERE action = 'queue.dead_retry'")
        .await;
    assert!(
        detail[0].contains(done.job_id.as_deref().unwrap()),
        "{detail:?}"
    );
    let result = bulk_result(&op, &done).await;
    assert_eq!(
        (result["matched"].as_u64(), result["done"].as_u64()),
        (Some(1), Some(1))
    );
    // A member of staff without the operator role cannot start one.
    let (_, support) = app.user_with_role("sup@example.com", Role::Support).await;
    let e = support
        .retry_dead("render", &RetryDeadIn::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("forbidden"));
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
    let dry = op
        .purge_completed(
            "render",
            &PurgeIn {
                older_than_hours: 0,
                dry_run: true,
            },
        )
        .await
        .unwrap();
    assert_eq!((dry.count, dry.job_id), (1, None));
    let purged = op
        .purge_completed(
            "render",
            &PurgeIn {
                older_than_hours: 0,
                dry_run: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(purged.count, 1);
    let result = bulk_result(&op, &purged).await;
    assert_eq!(result["done"].as_u64(), Some(1));
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

/// Three executions that fail permanently (an unknown template param), so three dead render jobs.
async fn three_dead_renders(
    ada: &airwave_api::ApiClient,
    op: &airwave_api::ApiClient,
) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..3 {
        let exe = execution(
            ada,
            json!({"layers": [{"type": "text", "text": "{{missing}}", "x": 1, "y": 1}]}),
        )
        .await;
        assert_eq!(
            finished_execution(ada, &exe).await.status,
            ExecutionStatus::Failed
        );
        ids.push(exe);
    }
    airwave_tests::eventually("three dead jobs", || async {
        let p = op.list_jobs("render", "state=dead").await.unwrap();
        (p.items.len() == 3).then_some(())
    })
    .await;
    ids
}

#[tokio::test]
async fn jobs_are_found_by_payload_field_and_time_range_and_retried_by_filter() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    let exes = three_dead_renders(&ada, &op).await;

    // By payload field: exactly the one job of that execution.
    let one = op
        .list_jobs(
            "render",
            &format!("state=dead&payload=execution_id={}", exes[1]),
        )
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].payload["execution_id"], exes[1].as_str());
    let none = op
        .list_jobs("render", "state=dead&payload=execution_id=exe_nope")
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // By time range: all of them since a minute ago, none before.
    let minute_ago = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = op
        .list_jobs("render", &format!("state=dead&created_after={minute_ago}"))
        .await
        .unwrap();
    assert_eq!(recent.items.len(), 3);
    let old = op
        .list_jobs("render", &format!("state=dead&created_before={minute_ago}"))
        .await
        .unwrap();
    assert!(old.items.is_empty());

    // Bad filters are 400s that name the problem.
    for bad in [
        "state=dead&payload=nofield",
        "state=dead&payload=a..b=1",
        "state=dead&created_after=yesterday",
    ] {
        let e = op.list_jobs("render", bad).await.unwrap_err();
        let status = e.status().unwrap_or(0);
        assert!((400..500).contains(&status), "{bad}: {e:?}");
        if bad.contains("payload") {
            assert_eq!(e.code(), Some("invalid_filter"), "{bad}");
        }
    }

    // Retry by filter: a dry run counts, then only the matching job runs again.
    let filter = airwave_api::RetryJobsIn {
        payload: Some(format!("execution_id={}", exes[0])),
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(op.retry_jobs("render", &filter).await.unwrap().count, 1);
    assert_eq!(
        op.list_jobs("render", "state=dead")
            .await
            .unwrap()
            .items
            .len(),
        3,
        "a dry run changes nothing"
    );
    let all = airwave_api::RetryJobsIn {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(op.retry_jobs("render", &all).await.unwrap().count, 3);
    let done = op
        .retry_jobs(
            "render",
            &airwave_api::RetryJobsIn {
                dry_run: false,
                ..filter
            },
        )
        .await
        .unwrap();
    assert_eq!((done.count, done.dry_run), (1, false));
    assert_eq!(bulk_result(&op, &done).await["done"].as_u64(), Some(1));
    let audit = app
        .db
        .texts("SELECT action FROM audit_log WHERE action = 'queue.jobs_retry'")
        .await;
    assert_eq!(audit.len(), 1);
    // Only dead or cancelled jobs can be retried.
    let e = op
        .retry_jobs(
            "render",
            &airwave_api::RetryJobsIn {
                state: Some(JobStateOut::Completed),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_filter"));
    // The retried job runs (the render job skips an execution that already failed, so it
    // completes); the other two never moved.
    airwave_tests::eventually("the retried job to run", || async {
        let dead = op.list_jobs("render", "state=dead").await.unwrap();
        let done = op
            .list_jobs(
                "render",
                &format!("state=completed&payload=execution_id={}", exes[0]),
            )
            .await
            .unwrap();
        (dead.items.len() == 2 && done.items.len() == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn queue_metrics_count_jobs_per_minute_with_wait_and_run_times() {
    let app = TestApp::spawn_with(&[("AIRWAVE_QUEUE_METRICS_FLUSH_MS", "50")]).await;
    let (_, ada) = app.member("ada@example.com").await;
    let (_, op) = app.user_with_role("op@example.com", Role::Operator).await;
    let ok = execution(&ada, json!({"width": 64, "height": 64})).await;
    assert_eq!(
        finished_execution(&ada, &ok).await.status,
        ExecutionStatus::Completed
    );
    three_dead_renders(&ada, &op).await;

    let m = airwave_tests::eventually("metrics of four render jobs", || async {
        let m = op.queue_metrics("render", "").await.unwrap();
        (m.enqueued == 4 && m.completed == 1 && m.dead == 3).then_some(m)
    })
    .await;
    assert_eq!(m.failed, 3, "every dead job failed once");
    assert!(!m.minutes.is_empty());
    assert!(m.run_ms.p50.is_some() && m.wait_ms.p99.is_some());
    let sum: u64 = m.minutes.iter().map(|x| x.enqueued).sum();
    assert_eq!(sum, 4);

    let queues = op.list_queues().await.unwrap();
    let render = queues.iter().find(|q| q.name == "render").unwrap();
    assert!(
        (render.rates.enqueued_per_min - 0.8).abs() < 1e-9,
        "{:?}",
        render.rates
    );

    // Ranges: past the 48 hours kept, or backwards, are refused.
    let e = op
        .queue_metrics(
            "render",
            "since=2026-01-01T00:00:00Z&until=2026-01-05T00:00:00Z",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_range"));
    let e = op
        .queue_metrics(
            "render",
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_range"));
    // Not for members.
    assert_eq!(
        ada.queue_metrics("render", "").await.unwrap_err().code(),
        Some("forbidden")
    );
}
