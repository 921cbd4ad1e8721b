//! Executions render end to end on the embedded defaults: the outbox hands the execution to the
//! `render` queue, a worker draws the template with the local renderer, and the PNG is stored.

use airwave_api::{ExecutionIn, ExecutionStatus};
use airwave_tests::{finished_execution, TestApp};
use serde_json::json;

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

async fn matrix(
    ada: &airwave_api::ApiClient,
    client_id: &str,
    template: serde_json::Value,
) -> String {
    airwave_tests::matrix_for(ada, client_id, template).await
}

#[tokio::test]
async fn an_execution_renders_to_a_stored_png() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();
    let template = json!({"width": 640, "height": 360, "background": "#102030", "layers": [
        {"type": "rect", "x": 0, "y": 300, "width": 640, "height": 60, "fill": "#f59e0b"},
        {"type": "text", "text": "{{headline}}", "x": 320, "y": 180, "size": 48, "color": "#ffffff", "align": "middle", "bold": true}
    ]});
    let m = matrix(&ada, &client.id, template).await;
    let e = ada
        .create_execution(
            &m,
            &ExecutionIn {
                params: json!({"headline": "Run faster"})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        )
        .await
        .unwrap();
    let done = finished_execution(&ada, &e.id).await;
    assert_eq!(
        (done.status, done.progress, done.error.as_deref()),
        (ExecutionStatus::Completed, 100, None)
    );
    let key = done.output_key.expect("an output");
    assert_eq!(key, format!("renders/{}/{}.png", client.id, e.id));
    let png = std::fs::read(app.data_dir().join("blobs").join(&key)).unwrap();
    assert_eq!(png_size(&png), (640, 360));

    let events = app
        .db
        .texts("SELECT type FROM events WHERE type LIKE 'render.%' ORDER BY id")
        .await;
    assert_eq!(events, ["render.started", "render.completed"]);
    let renders = app.db.texts("SELECT status FROM renders").await;
    assert_eq!(renders, ["completed"]);
}

#[tokio::test]
async fn an_image_layer_draws_the_clients_asset() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();
    // A stored 1×1 PNG.
    let asset = app
        .image_asset(&ada, &client.id, "dot", ONE_RED_PIXEL)
        .await;
    let m = matrix(&ada, &client.id, json!({"width": 100, "height": 100, "layers": [{"type": "image", "src": "{{logo}}", "x": 0, "y": 0, "width": 100, "height": 100}]})).await;
    let e = ada
        .create_execution(
            &m,
            &ExecutionIn {
                params: json!({"logo": asset.id}).as_object().unwrap().clone(),
            },
        )
        .await
        .unwrap();
    let done = finished_execution(&ada, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
}

#[tokio::test]
async fn a_template_that_cannot_render_fails_the_execution_with_the_reason() {
    let app = TestApp::spawn().await;
    let (_, ada) = app.member("ada@example.com").await;
    let client = ada.create_client("Acme").await.unwrap();
    let m = matrix(
        &ada,
        &client.id,
        json!({"layers": [{"type": "text", "text": "{{headline}}", "x": 1, "y": 1}]}),
    )
    .await;
    let e = ada
        .create_execution(&m, &ExecutionIn::default())
        .await
        .unwrap();
    let done = finished_execution(&ada, &e.id).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert!(
        done.error
            .as_deref()
            .unwrap_or_default()
            .contains("no param `headline`"),
        "{:?}",
        done.error
    );
    // job.dead follows once the worker records the failure.
    let events = airwave_tests::eventually("job.dead", || async {
        let e = app.db.texts("SELECT type FROM events WHERE type LIKE 'render.%' OR type = 'job.dead' ORDER BY id").await;
        e.iter().any(|t| t == "job.dead").then_some(e)
    })
    .await;
    assert_eq!(events, ["render.started", "render.failed", "job.dead"]);
}

/// A 1×1 red PNG.
pub const ONE_RED_PIXEL: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xDE, 0x00, 0x00, 0x00, 0x0C, 0x49, 0x44, 0x41, 0x54, 0x08, 0xD7, 0x63, 0xF8, 0xCF, 0xC0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xDD, 0x8D, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E,
    0x44, 0xAE, 0x42, 0x60, 0x82,
];
