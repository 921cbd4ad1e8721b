//! Chaos with real processes: a worker process killed with SIGKILL in the middle of a job.

use airwave_api::{ExecutionIn, ExecutionStatus};
use airwave_tests::{finished_execution, TestApp};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_job_whose_worker_is_killed_mid_render_completes_on_another_worker() {
    // The API alone; workers are separate processes on the same database. A short lease makes
    // the dead worker's job come back quickly.
    let app = TestApp::spawn_api_only(&[("AIRWAVE_QUEUE_LEASE_MS", "2000")]).await;
    // The first worker sends the confirmation mail too.
    let first = app.spawn_worker();
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();

    // The image the render needs is a named pipe: reading it blocks until someone writes, so the
    // first worker is stuck mid-render, holding the job's lease, when it is killed. (Uploaded
    // first, so the server chose its key; the pipe then takes the file's place.)
    let asset = app
        .image_asset(&ada, &client.id, "slow", crate::render::ONE_RED_PIXEL)
        .await;
    let path = app.blob_path(&asset.id).await;
    std::fs::remove_file(&path).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let template = json!({"width": 64, "height": 64, "layers": [{"type": "image", "asset_id": asset.id, "x": 0, "y": 0, "width": 64, "height": 64}]});
    let m = airwave_tests::matrix_for(&ada, &client.id, template).await;

    let exe = ada
        .create_execution(&m, &ExecutionIn::default())
        .await
        .unwrap()
        .id;

    // Wait for the real signals: the render job is active under the first worker's lease, and
    // its handler has marked the execution rendering (it is then blocked on the pipe).
    let mut holder = None;
    for _ in 0..600 {
        holder = app
            .db
            .text(
                "SELECT worker_id FROM jobs WHERE queue = 'render' AND state = $1",
                "active",
            )
            .await;
        if holder.is_some()
            && ada.get_execution(&exe).await.unwrap().status == ExecutionStatus::Rendering
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let holder = holder.expect("the first worker took the job");
    assert!(
        holder.contains(&format!(":{}:", first.pid())),
        "held by {holder}"
    );
    assert_eq!(
        ada.get_execution(&exe).await.unwrap().status,
        ExecutionStatus::Rendering
    );

    first.kill_hard().await;
    // Nothing reads the pipe any more: put the real image in its place.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, crate::render::ONE_RED_PIXEL).unwrap();

    let second = app.spawn_worker();
    let done = finished_execution(&ada, &exe).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);

    // The job counts both attempts: the one lost with the killed worker, and the one that worked.
    let attempts = airwave_tests::eventually("the render job to complete", || async {
        app.db
            .text(
                "SELECT CAST(attempts AS TEXT) FROM jobs WHERE queue = 'render' AND state = $1",
                "completed",
            )
            .await
    })
    .await;
    let attempts = Some(attempts);
    assert_eq!(attempts.as_deref(), Some("2"));
    let lost = app
        .db
        .text(
            "SELECT error FROM job_attempts WHERE worker_id = $1",
            &holder,
        )
        .await
        .unwrap_or_default();
    assert!(lost.contains("stopped renewing its lease"), "{lost}");
    drop(second);
}
