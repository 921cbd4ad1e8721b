//! End to end: the real console binary under Xvfb, driven through `tauri-driver` and
//! WebKitWebDriver against a real `airwave-server` (with its job queue on a real Redis). Logs in
//! through the UI, sees health live, makes a component fail for real (Redis is stopped), sees the
//! view change and a native notification raised (the `Notify` call on the session bus, answered
//! by dunst), sees it recover. The operator takes a backup from the Backups view and verifies it
//! (a restore drill), watching both run, and replays a failed webhook delivery from the Webhooks
//! view to a local receiver that is back, seeing it delivered. Then support's day: a support login sees only the
//! Overview, E-mails and Backups, finds a client's password-reset mail through Ctrl+K, reads it
//! (HTML in a sandboxed frame), resends it after a confirmation, and the second copy arrives at
//! the real SMTP server (maildev). Saves a screenshot of each view; scans the console's config
//! dir, logs and webview storage for both API tokens.
//!
//! Needs a display, a D-Bus session with a Secret Service, dunst, dbus-monitor, tauri-driver and
//! WebKitWebDriver: `scripts/test` provides them and sets `AIRWAVE_E2E=1`. Without it the test
//! says so and does nothing.

// A failed unwrap is how a test step fails here.
#![allow(clippy::unwrap_used)]

mod webdriver;

use airwave_api::Role;
use airwave_console_core::profiles::{Profile, Profiles};
use airwave_console_core::secrets::{KeyringStore, SecretStore};
use airwave_tests::{free_port, mail, server_bin, spawn_redis, TestApp, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use webdriver::Session;

/// A child process stopped with SIGTERM when dropped (never SIGKILL: a killed tauri-driver
/// orphans WebKitWebDriver).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

fn redis(port: u16, dir: &Path) -> Proc {
    let p = spawn_redis(port, dir).expect("redis-server (scripts/test installs it)");
    wait_port(port);
    Proc(p)
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

async fn wait_file_contains(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {needle:?} in {}:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A webhook receiver on loopback: answers 500 until `up`, then 200; records each webhook-id.
struct Receiver {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ids: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Self {
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (u, i) = (up.clone(), ids.clone());
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let (u, i) = (u.clone(), i.clone());
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                i.lock().unwrap().push(id.to_owned());
                if u.load(std::sync::atomic::Ordering::SeqCst) {
                    axum::http::StatusCode::OK
                } else {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { port, up, ids }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/airwave", self.port)
    }

    fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

async fn shot(s: &Session, dir: &Path, name: &str) {
    // The picture shows what the DOM holds once the page has painted it.
    s.settle().await.unwrap();
    let png = s.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end() {
    if std::env::var_os("AIRWAVE_E2E").is_none() {
        eprintln!("e2e: not run here — scripts/test runs it under Xvfb with AIRWAVE_E2E=1");
        return;
    }
    let console_bin = std::env::var("AIRWAVE_CONSOLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| server_bin().with_file_name("airwave-console"));
    assert!(
        console_bin.exists(),
        "build the console first: {}",
        console_bin.display()
    );
    let driver = std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into());
    // AIRWAVE_E2E_KEEP=1 keeps the console's home (its logs, config and webview data) to look at.
    let mut home = tempfile::Builder::new()
        .prefix("airwave-e2e")
        .tempdir()
        .unwrap();
    if std::env::var_os("AIRWAVE_E2E_KEEP").is_some() {
        home.disable_cleanup(true);
        eprintln!(
            "e2e: the console's home is kept in {}",
            home.path().display()
        );
    }
    let shots = std::env::var("AIRWAVE_E2E_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| home.path().join("screenshots"));
    std::fs::create_dir_all(&shots).unwrap();

    // A real server whose job queue lives on a Redis this test can stop.
    let redis_port = free_port();
    let mut redis_proc = Some(redis(redis_port, home.path()));
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    // Its mail goes to the test command's real SMTP server.
    let (smtp, maildev) = mail::smtp_server().expect("scripts/test starts maildev");
    let app = TestApp::spawn_with(&[
        ("REDIS_URL", redis_url.as_str()),
        ("AIRWAVE_EMAIL_TRANSPORT", "smtp"),
        ("SMTP_URL", smtp.as_str()),
        ("AIRWAVE_HEALTH_CHECK_INTERVAL_MS", "500"),
        ("AIRWAVE_OPS_STATS_INTERVAL_MS", "1000"),
        // Webhooks go to this test's receiver on loopback; one attempt each.
        ("AIRWAVE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1/32"),
        ("AIRWAVE_WEBHOOK_RETRY_SCHEDULE", "none"),
    ])
    .await;
    let email = "ops@airwave.test";
    let (_, operator_api) = app.user_with_role(email, Role::Operator).await;

    // One profile, not yet logged in (so the console starts no local server).
    let config = home.path().join("config");
    let mut profiles = Profiles::load(&config.join("profiles.json")).unwrap();
    let profile = Profile::new("Staging", app.base.as_str(), None, false).unwrap();
    let profile_id = profile.id.clone();
    // The console files the token under the profile's origin-bound keychain entry.
    let keychain_key = airwave_console_core::session::keychain_key(&profile);
    profiles.upsert(profile);
    profiles.set_active(&profile_id).unwrap();
    profiles.save().unwrap();

    // Notifications: dunst answers on the session bus, dbus-monitor records every Notify call.
    let notify_log = home.path().join("notify.log");
    let _monitor = Proc(
        Command::new("dbus-monitor")
            .args([
                "--session",
                "interface='org.freedesktop.Notifications',member='Notify'",
            ])
            .stdout(log_file(&notify_log))
            .spawn()
            .expect("dbus-monitor"),
    );
    let _dunst = Proc(
        Command::new("dunst")
            .stdout(Stdio::null())
            .stderr(log_file(&home.path().join("dunst.log")))
            .spawn()
            .expect("dunst"),
    );

    let (driver_port, native_port) = (free_port(), free_port());
    let driver_log = home.path().join("console.log");
    let (data, cache) = (home.path().join("data"), home.path().join("cache"));
    let tauri_driver = Proc(
        Command::new(&driver)
            .args([
                "--port",
                &driver_port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .env("AIRWAVE_CONSOLE_CONFIG_DIR", &config)
            .env("XDG_DATA_HOME", &data)
            .env("XDG_CACHE_HOME", &cache)
            .env("XDG_CONFIG_HOME", home.path().join("xdg-config"))
            .stdout(log_file(&driver_log))
            .stderr(log_file(&home.path().join("console.err.log")))
            .spawn()
            .expect("tauri-driver (scripts/test installs it)"),
    );
    // tauri-driver listens at once but starts WebKitWebDriver beside it: wait for both.
    wait_port(driver_port);
    wait_port(native_port);
    let s = Session::start(driver_port, console_bin.to_str().unwrap())
        .await
        .unwrap();

    // Not logged in: the Overview says so and points to Settings.
    s.wait_text("main", "Not connected", WAIT).await.unwrap();
    s.click("nav button[data-view='settings']").await.unwrap();
    s.wait_text("main", "Log in to Staging", WAIT)
        .await
        .unwrap();
    s.type_into("form[aria-label='Log in'] input[name='email']", email)
        .await
        .unwrap();
    s.type_into("form[aria-label='Log in'] input[name='password']", PASSWORD)
        .await
        .unwrap();
    shot(&s, &shots, "login").await;
    s.click("form[aria-label='Log in'] button.primary")
        .await
        .unwrap();
    s.wait_text("[data-testid='profiles']", email, WAIT)
        .await
        .unwrap();
    let token = KeyringStore
        .get(&keychain_key)
        .unwrap()
        .expect("the token is in the keychain");
    assert!(token.starts_with("awt_"), "an API token");
    shot(&s, &shots, "settings").await;

    // Overview: every component live, queue totals from the stream.
    s.click("nav button[data-view='overview']").await.unwrap();
    let queue = "[data-component='queue:responseTime']";
    s.wait_text(queue, "passing", WAIT).await.unwrap();
    s.wait_text("[data-component='database:responseTime']", "passing", WAIT)
        .await
        .unwrap();
    s.wait_text("header", "live", WAIT).await.unwrap();
    s.wait_text("[data-testid='queue-totals']", "waiting", WAIT)
        .await
        .unwrap();
    s.wait_for("[data-testid='queue-chart'] svg", WAIT)
        .await
        .unwrap();
    s.wait_for("[data-testid='depth-chart'] svg", WAIT)
        .await
        .unwrap();
    shot(&s, &shots, "overview").await;

    // Make the queue fail for real: stop its Redis. The view changes without a reload and a
    // native notification is raised.
    drop(redis_proc.take());
    s.wait_text(queue, "failing", WAIT).await.unwrap();
    wait_file_contains(&notify_log, "Queue is failing", WAIT).await;
    shot(&s, &shots, "overview-failing").await;

    // Clicking the notification (its default action, invoked through dunst as a click would)
    // brings up the related view: Health.
    s.click("nav button[data-view='settings']").await.unwrap();
    let clicked = Command::new("dunstctl")
        .args(["action", "0"])
        .status()
        .expect("dunstctl");
    assert!(clicked.success(), "dunstctl action");
    s.wait_for("nav button[data-view='health'].active", WAIT)
        .await
        .unwrap();

    s.wait_text("[data-testid='health-table']", "failing", WAIT)
        .await
        .unwrap();
    s.click("[data-testid='health-table'] tr[data-component='queue:responseTime'] button")
        .await
        .unwrap();
    s.wait_text("[data-testid='latency-chart']", "queue:responseTime", WAIT)
        .await
        .unwrap();
    s.script(
        "document.querySelector(\"[role='radiogroup'] button:nth-child(2)\").click(); return null",
    )
    .await
    .unwrap();
    s.wait_for("[data-testid='uptime-chart'] svg", WAIT)
        .await
        .unwrap();
    shot(&s, &shots, "health").await;

    // It recovers when Redis is back; that is notified too.
    redis_proc = Some(redis(redis_port, home.path()));
    s.click("nav button[data-view='overview']").await.unwrap();
    s.wait_text(queue, "passing", WAIT).await.unwrap();
    wait_file_contains(&notify_log, "Queue recovered", WAIT).await;

    // Backups: the operator takes one now and proves it restores (a drill), watching both run.
    s.click("nav button[data-view='backups']").await.unwrap();
    s.wait_for("[data-testid='run-backup']", WAIT)
        .await
        .unwrap();
    s.click("[data-testid='run-backup']").await.unwrap();
    // Newest first: the backup just asked for is the first row.
    let newest = "[data-testid='backup-list'] tbody tr:first-child";
    s.wait_text(
        &format!("{newest} [data-field='status']"),
        "succeeded",
        WAIT,
    )
    .await
    .unwrap();
    s.click(&format!("{newest} button[data-action='verify']"))
        .await
        .unwrap();
    s.wait_text(&format!("{newest} [data-field='drill']"), "passed", WAIT)
        .await
        .unwrap();
    s.wait_text(&format!("{newest} [data-field='drill']"), "RTO", WAIT)
        .await
        .unwrap();
    shot(&s, &shots, "backups").await;

    // Webhooks: a client's receiver was down (500) when a delivery was made; once it is back
    // the operator finds the failed message in the Webhooks view, replays it after a
    // confirmation, and sees it delivered — the receiver gets the same webhook-id again.
    let receiver = Receiver::start().await;
    let (_, owner) = app.user_with_role("owner@airwave.test", Role::Member).await;
    let client_id = owner.create_client("Acme").await.unwrap().id;
    let endpoint = operator_api
        .create_webhook_endpoint(&airwave_api::WebhookEndpointIn {
            client_id,
            url: receiver.url(),
            event_types: vec!["webhook.test".into()],
            description: Some("Acme's receiver".into()),
            headers: None,
            rate_limit_per_s: None,
        })
        .await
        .unwrap()
        .endpoint;
    let failed = operator_api
        .test_webhook_endpoint(&endpoint.id)
        .await
        .unwrap();
    assert_eq!(failed.status_code, Some(500));
    receiver.up();
    s.click("nav button[data-view='webhooks']").await.unwrap();
    s.wait_text("[data-testid='webhook-endpoints']", &receiver.url(), WAIT)
        .await
        .unwrap();
    s.click(&format!(
        "[data-testid='webhook-endpoints'] tr[data-endpoint='{}'] button",
        endpoint.id
    ))
    .await
    .unwrap();
    s.wait_text("[data-testid='webhook-messages']", "failed", WAIT)
        .await
        .unwrap();
    s.click(&format!(
        "[data-testid='webhook-messages'] tr[data-message='{}'] button",
        failed.message_id
    ))
    .await
    .unwrap();
    s.wait_text("[data-testid='webhook-attempts']", "500", WAIT)
        .await
        .unwrap();
    s.click("[data-testid='webhook-message'] button[data-action='replay']")
        .await
        .unwrap();
    s.wait_text("[role='dialog']", "same webhook-id", WAIT)
        .await
        .unwrap();
    s.click("[role='dialog'] button.primary").await.unwrap();
    s.wait_text(
        "[data-testid='webhook-message'] [data-status]",
        "delivered",
        WAIT,
    )
    .await
    .unwrap();
    s.wait_text("[data-testid='webhook-attempts']", "200", WAIT)
        .await
        .unwrap();
    assert_eq!(
        receiver.ids(),
        [failed.message_id.clone(), failed.message_id.clone()],
        "the replay carried the same webhook-id"
    );
    // The endpoint's row follows live: no failed message left, its health up from 0.
    let row = format!(
        "[data-testid='webhook-endpoints'] tr[data-endpoint='{}']",
        endpoint.id
    );
    s.wait_text(&format!("{row} [data-field='failed']"), "0", WAIT)
        .await
        .unwrap();
    s.wait_text(&format!("{row} [data-field='health']"), "50 / 100", WAIT)
        .await
        .unwrap();
    shot(&s, &shots, "webhooks").await;

    // Support's day. A client says the password-reset mail never came.
    let client = mail::unique_address("e2e-client");
    // (made by the CLI: this server's mail goes to maildev, not to an outbox to confirm from)
    app.user_with_role(&client, Role::Member).await;
    app.api.request_password_reset(&client).await.unwrap();
    // Its account's Welcome and the reset reached the SMTP server.
    let resets = |mails: &[serde_json::Value]| {
        mails
            .iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Reset your")
            })
            .count()
    };
    assert_eq!(resets(&mail::maildev_wait(&maildev, &client, 2).await), 1);
    let support = "support@airwave.test";
    app.user_with_role(support, Role::Support).await;
    s.click("nav button[data-view='settings']").await.unwrap();
    s.click("[data-testid='profiles'] .actions button")
        .await
        .unwrap();
    s.wait_text("[role='dialog']", "Log out", WAIT)
        .await
        .unwrap();
    s.click("[role='dialog'] button.primary").await.unwrap();
    s.wait_text("body", "Logged out of Staging", Duration::from_secs(15))
        .await
        .unwrap();
    s.wait_text("main", "Log in to Staging", WAIT)
        .await
        .unwrap();
    s.type_into("form[aria-label='Log in'] input[name='email']", support)
        .await
        .unwrap();
    s.type_into("form[aria-label='Log in'] input[name='password']", PASSWORD)
        .await
        .unwrap();
    s.click("form[aria-label='Log in'] button.primary")
        .await
        .unwrap();
    s.wait_text("[data-testid='profiles']", support, WAIT)
        .await
        .unwrap();
    let support_token = KeyringStore
        .get(&keychain_key)
        .unwrap()
        .expect("support's token is in the keychain");
    // Support sees the Overview, E-mails and Backups (and Settings), nothing else.
    s.wait_for("nav button[data-view='emails']", WAIT)
        .await
        .unwrap();
    let nav = s.text("nav").await.unwrap();
    assert!(
        nav.contains("Overview") && nav.contains("Backups") && !nav.contains("Health"),
        "support's sidebar: {nav}"
    );

    // Ctrl+K, the client's address, Enter: the E-mails view filtered to it.
    s.script("window.dispatchEvent(new KeyboardEvent('keydown', {key: 'k', ctrlKey: true, bubbles: true})); return null")
        .await
        .unwrap();
    s.type_into("input[name='palette']", &client).await.unwrap();
    s.wait_text("[data-testid='palette-results']", "E-mails to", WAIT)
        .await
        .unwrap();
    s.type_into("input[name='palette']", "\u{E007}")
        .await
        .unwrap();
    s.wait_text("[data-testid='email-list']", &client, WAIT)
        .await
        .unwrap();
    s.wait_text("[data-testid='email-list']", "password_reset", WAIT)
        .await
        .unwrap();
    s.script("[...document.querySelectorAll(\"[data-testid='email-list'] tbody tr\")].find((r) => r.innerText.includes('password_reset')).querySelector('button').click(); return null")
        .await
        .unwrap();
    s.wait_text("[data-testid='email-detail']", "Reset your", WAIT)
        .await
        .unwrap();
    s.wait_text("[data-testid='email-attempts']", "sent", WAIT)
        .await
        .unwrap();
    // The HTML part is in a frame with no scripts and no remote loads; its link shows no token.
    let frame = s
        .script("const f = document.querySelector(\"[data-testid='mail-frame']\"); return [f.getAttribute('sandbox'), f.getAttribute('srcdoc')]")
        .await
        .unwrap();
    assert_eq!(frame[0], "", "sandboxed without allowances");
    let srcdoc = frame[1].as_str().unwrap_or_default();
    assert!(srcdoc.contains("default-src 'none'") && srcdoc.contains("[redacted]"));
    shot(&s, &shots, "emails").await;

    // Resend: confirmed first, saying to whom; then the second copy arrives at the SMTP server.
    s.click("[data-testid='email-detail'] button[data-action='resend']")
        .await
        .unwrap();
    s.wait_text("[role='dialog']", &client, WAIT).await.unwrap();
    shot(&s, &shots, "emails-resend").await;
    s.click("[role='dialog'] button.primary").await.unwrap();
    let got = mail::maildev_wait(&maildev, &client, 3).await;
    assert_eq!(resets(&got), 2, "the resent mail arrived");
    // The new message is shown, linked to the one it resends, and goes to sent live.
    s.wait_text("[data-testid='email-detail']", "Resends", WAIT)
        .await
        .unwrap();
    s.wait_text("[data-testid='email-detail'] [data-status]", "sent", WAIT)
        .await
        .unwrap();

    // The tokens are nowhere but the keychain: not in the page, its storage, the config dir, the
    // webview's data and cache, or the console's logs.
    let page = s
        .script("return document.documentElement.outerHTML + JSON.stringify(Object.assign({}, localStorage)) + JSON.stringify(Object.assign({}, sessionStorage))")
        .await
        .unwrap();
    for t in [&token, &support_token] {
        assert!(
            !page.to_string().contains(t.as_str()),
            "a token reached the webview"
        );
    }
    s.close().await.unwrap();
    drop(tauri_driver);
    let mut files = Vec::new();
    files_under(home.path(), &mut files);
    let scanned: Vec<_> = files.iter().filter(|f| !f.starts_with(&shots)).collect();
    assert!(
        scanned.iter().any(|f| f.starts_with(&config)),
        "the config dir was scanned"
    );
    for f in &scanned {
        let bytes = std::fs::read(f).unwrap_or_default();
        for t in [&token, &support_token] {
            assert!(
                !contains(&bytes, t.as_bytes()),
                "a token is in {}",
                f.display()
            );
        }
    }
    eprintln!(
        "e2e: {} files scanned for the token (config, webview data and cache, logs); screenshots in {}",
        scanned.len(),
        shots.display()
    );
    drop(redis_proc);
}
