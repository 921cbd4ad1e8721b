//! The operations stream and health history: a component that really fails (the queue's Redis,
//! stopped) shows up live as `health.changed`, and a client that reconnects with `Last-Event-ID`
//! — to the same server, or after a restart — receives everything after it, nothing twice.

use airwave_api::{ops_event, HealthChangedEvent, HealthStatus, Role};
use airwave_tests::{SseStream, TestApp};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// A private redis-server (stopping it disturbs no other test).
struct Redis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `None` when redis-server is not installed (only allowed outside scripts/test).
    fn start() -> Option<Redis> {
        let port = airwave_tests::free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = airwave_tests::spawn_redis(port, dir.path());
        match child {
            Ok(child) => Some(Redis {
                child,
                port,
                _dir: dir,
            }),
            Err(e) => {
                assert!(
                    std::env::var("AIRWAVE_TEST_REQUIRE_SERVICES").is_err(),
                    "scripts/test runs need redis-server: {e}"
                );
                eprintln!(
                    "ops stream test: not run (needs redis-server; scripts/test provides it)"
                );
                None
            }
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis did not start");
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        self.child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn change(e: &airwave_tests::SseEvent) -> Option<HealthChangedEvent> {
    (e.event == ops_event::HEALTH_CHANGED).then(|| serde_json::from_str(&e.data).unwrap())
}

fn is_queue(e: &airwave_tests::SseEvent, status: HealthStatus) -> bool {
    change(e).is_some_and(|c| c.component == "queue:responseTime" && c.status == status)
}

#[tokio::test]
async fn only_operators_admins_and_support_watch_the_stream() {
    let app = TestApp::spawn().await;
    app.member("ada@example.com").await;
    app.user_with_role("sup@example.com", Role::Support).await;
    let member = app.login("ada@example.com").await.token;
    let support = app.login("sup@example.com").await.token;
    let denied = SseStream::open(&app, "/api/ops/stream", &member, None)
        .await
        .err()
        .expect("members are refused");
    assert_eq!(denied.status(), 403);
    let anonymous = app
        .http()
        .get(app.url("/api/ops/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let bad = SseStream::open(&app, "/api/ops/stream", &support, Some("yesterday"))
        .await
        .err()
        .expect("a bad Last-Event-ID is refused");
    assert_eq!(bad.status(), 422);
    let problem: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_last_event_id");
    assert!(SseStream::open(&app, "/api/ops/stream", &support, None)
        .await
        .is_ok());
}

#[tokio::test]
async fn a_failing_component_streams_live_and_a_resumed_stream_loses_nothing() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    redis.wait_ready().await;
    let url = redis.url();
    let app = TestApp::spawn_with(&[
        ("REDIS_URL", url.as_str()),
        ("AIRWAVE_HEALTH_CHECK_INTERVAL_MS", "100"),
        ("AIRWAVE_OPS_STATS_INTERVAL_MS", "300"),
        // A stream outlives the request timeout: the timeout covers the answer's start only.
        ("AIRWAVE_REQUEST_TIMEOUT_MS", "1000"),
    ])
    .await;
    app.user_with_role("op@example.com", Role::Operator).await;
    let token = app.login("op@example.com").await.token;

    // From the start of the log: each component's first check, then queue stats.
    let mut s = SseStream::open(&app, "/api/ops/stream", &token, Some("0"))
        .await
        .expect("an operator may watch");
    s.until(WAIT, |e| is_queue(e, HealthStatus::Pass)).await;
    let (stats, _) = s.until(WAIT, |e| e.event == ops_event::QUEUE_STATS).await;
    let names: Vec<String> = stats.json()["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"render".to_owned()), "{names:?}");

    // Redis dies: the queue component fails, live, past the request timeout.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.kill();
    let (failed, _) = s.until(WAIT, |e| is_queue(e, HealthStatus::Fail)).await;
    let c = change(&failed).unwrap();
    assert_eq!(c.previous, Some(HealthStatus::Pass));
    assert!(c.output.is_some(), "says why");
    let last_seen = failed.id.clone().unwrap();
    drop(s);

    // While nobody listens, Redis comes back; the server restarts too.
    redis.restart();
    redis.wait_ready().await;
    let app = app.restart().await;

    // Resume: everything after the last event seen, in order, nothing twice, the recovery included.
    let mut s = SseStream::open(&app, "/api/ops/stream", &token, Some(&last_seen))
        .await
        .expect("the session survives a restart");
    let (recovered, before) = s.until(WAIT, |e| is_queue(e, HealthStatus::Pass)).await;
    // The queue's first change after the outage leaves `fail` (on a loaded machine a slow first
    // check may go through `warn` on its way to `pass`).
    let first = before
        .iter()
        .chain([&recovered])
        .filter_map(change)
        .find(|c| c.component == "queue:responseTime")
        .unwrap();
    assert_eq!(first.previous, Some(HealthStatus::Fail));
    let received: Vec<i64> = before
        .iter()
        .chain([&recovered])
        .map(|e| e.id_num())
        .collect();
    let logged: Vec<i64> = app
        .db
        .texts(&format!(
            "SELECT CAST(id AS TEXT) FROM ops_events WHERE id > {last_seen} AND id <= {} ORDER BY ops_events.id",
            recovered.id_num()
        ))
        .await
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(received, logged, "every logged event, once, in order");
    // The history shows the outage.
    let op = app.api.with_token(token.clone());
    let h = op
        .health_history("component=queue:responseTime")
        .await
        .unwrap();
    let statuses: Vec<HealthStatus> = h.points.iter().map(|p| p.status).collect();
    assert!(statuses.contains(&HealthStatus::Fail) && statuses.contains(&HealthStatus::Pass));
    assert!(h.uptime.unwrap() < 1.0);
    assert_eq!(h.observed_unit.as_deref(), Some("ms"));
    let e = op.health_history("component=nope").await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"));
    let e = op
        .health_history("component=queue:responseTime&since=2020-01-01T00:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_range"));
}
