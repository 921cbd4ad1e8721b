use airwave_tests::TestApp;

#[tokio::test]
async fn health_reports_the_database_as_health_json() {
    let app = TestApp::spawn().await;
    let resp = app.http().get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/health+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    let db = &body["checks"]["database:responseTime"][0];
    assert_eq!(db["status"], "pass");
    assert_eq!(
        db["componentId"],
        match app.backend {
            airwave_tests::Backend::Sqlite => "sqlite",
            airwave_tests::Backend::Postgres => "postgres",
        }
    );
    assert_eq!(db["observedUnit"], "ms");
    assert!(db["observedValue"].as_f64().is_some());
}

#[tokio::test]
async fn liveness_answers_without_touching_anything() {
    let app = TestApp::spawn().await;
    let resp = app
        .http()
        .get(app.url("/api/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/health+json");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_echo_it() {
    let app = TestApp::spawn().await;
    let resp = app
        .http()
        .get(app.url("/api/no-such-thing"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: airwave_api::Problem = resp.json().await.unwrap();
    assert_eq!(
        (p.code.as_str(), p.request_id.as_deref()),
        ("not_found", Some("req-123"))
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let app = TestApp::spawn().await;
    let status = app.stop().await;
    assert!(status.success(), "exit status {status:?}");
}
