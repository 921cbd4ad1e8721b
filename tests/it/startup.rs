//! The server starts while Redis or PostgreSQL is briefly unreachable: it answers
//! `/api/health/live`, reports the failing component in `/api/health`, answers what needs the
//! missing service with a 503 problem (never a 500), and recovers by itself once it is back.

use airwave_api::RegisterIn;
use airwave_tests::{backend, eventually, free_port, Backend, TestApp};
use serde_json::Value;

async fn health(app: &TestApp) -> (u16, Value) {
    let r = app.http().get(app.url("/api/health")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn check_status(h: &Value, key: &str) -> String {
    h["checks"][key][0]["status"]
        .as_str()
        .unwrap_or("missing")
        .to_owned()
}

/// The process answers liveness while `/api/health` fails on `component`.
async fn assert_up_with_failing(app: &TestApp, component: &str) -> Value {
    let live = app
        .http()
        .get(app.url("/api/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let (status, h) = health(app).await;
    assert_eq!(status, 503);
    assert_eq!(check_status(&h, component), "fail", "{h}");
    h
}

fn user(email: &str) -> RegisterIn {
    RegisterIn {
        email: email.into(),
        password: "correct horse battery staple".into(),
        name: "Startup".into(),
    }
}

#[tokio::test]
async fn the_server_starts_while_redis_is_down_and_recovers_when_it_comes_back() {
    let port = free_port();
    let app = TestApp::spawn_with(&[("REDIS_URL", &format!("redis://127.0.0.1:{port}"))]).await;
    let h = assert_up_with_failing(&app, "queue:responseTime").await;
    assert_eq!(check_status(&h, "database:responseTime"), "pass");
    // What does not need Redis works meanwhile.
    app.api
        .register(&user("redis-down@example.com"))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let Ok(mut redis) = airwave_tests::spawn_redis(port, dir.path()) else {
        assert!(
            std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
            "scripts/test runs need redis-server"
        );
        return;
    };
    eventually("the queue to pass once Redis is up", || async {
        let (status, h) = health(&app).await;
        (status == 200 && check_status(&h, "queue:responseTime") == "pass").then_some(())
    })
    .await;
    let _ = redis.kill();
    let _ = redis.wait();
}

/// On PostgreSQL: the database's port answers nothing at start; a proxy to the real server opens
/// on it later.
#[tokio::test]
async fn the_server_starts_while_postgres_is_down_and_serves_once_it_is_up() {
    if backend() != Backend::Postgres {
        return;
    }
    let admin = url::Url::parse(&std::env::var("AIRWAVE_TEST_PG_URL").unwrap()).unwrap();
    let name = format!("airwave_startup_{}", std::process::id());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.as_str())
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let real = format!(
        "{}:{}",
        admin.host_str().unwrap(),
        admin.port().unwrap_or(5432)
    );
    let port = free_port();
    let mut url = admin.clone();
    url.set_port(Some(port)).unwrap();
    url.set_path(&name);
    let app = TestApp::spawn_with(&[("DATABASE_URL", url.as_str())]).await;

    assert_up_with_failing(&app, "database:responseTime").await;
    let r = app
        .http()
        .post(app.url("/api/auth/register"))
        .json(&user("pg-down@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["code"], "starting");

    // The database comes up (a proxy to the real one opens on its port).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let proxy = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(real).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    eventually("the server to be ready once the database is up", || async {
        let (status, _) = health(&app).await;
        (status == 200).then_some(())
    })
    .await;
    // Accepted (202): the request was stored and its confirmation mail queued.
    eventually("registration to work", || async {
        app.api.register(&user("pg-up@example.com")).await.ok()
    })
    .await;
    proxy.abort();
}

/// Every process registers the event consumers before it serves: an event committed by the API
/// before any worker ever ran (here: a registration's confirmation mail) reaches the consumers
/// once a worker starts. (Registered by the worker's dispatcher alone, the consumers started
/// after the event and the mail was never sent.)
#[tokio::test]
async fn events_committed_before_any_worker_started_are_delivered_once_one_does() {
    let app = TestApp::spawn_api_only(&[]).await;
    app.api.register(&user("early@example.com")).await.unwrap();
    assert_eq!(app.db.count_where("emails", "status = 'queued'").await, 1);
    let _worker = app.spawn_worker();
    let mail = app.last_email_to("early@example.com").await;
    assert!(
        mail.is_some_and(|m| m.contains("/confirm")),
        "the confirmation mail was not sent"
    );
}
