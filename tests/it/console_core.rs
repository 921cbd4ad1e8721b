//! The console's core against a real airwave-server: log in and out through profiles with the
//! token kept in a secret store (never in the profiles file), and the live stream reconnecting
//! and resuming by itself across a server restart.

use airwave_api::Role;
use airwave_console_core::profiles::{Profile, Profiles};
use airwave_console_core::secrets::{KeyringStore, MemoryStore, SecretStore};
use airwave_console_core::stream::{self, ConnState};
use airwave_console_core::{session, ErrorKind};
use airwave_tests::TestApp;
use std::time::Duration;

#[tokio::test]
async fn login_keeps_a_role_scoped_token_in_the_store_and_logout_revokes_it() {
    let app = TestApp::spawn().await;
    app.user_with_role("op@example.com", Role::Operator).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profiles.json");
    let mut profiles = Profiles::load(&path).unwrap();
    // A unique profile: the keychain outlives the test.
    let name = format!("Staging {}", std::process::id());
    let profile = Profile::new(&name, app.url("/").as_str(), None, false).unwrap();
    let id = profile.id.clone();
    let key = session::keychain_key(&profile);
    profiles.upsert(profile);
    // The real OS keychain when scripts/test provides one; memory otherwise.
    let secrets: Box<dyn SecretStore> = if std::env::var("AIRWAVE_TEST_KEYCHAIN").is_ok() {
        Box::new(KeyringStore)
    } else {
        Box::new(MemoryStore::default())
    };
    let secrets = secrets.as_ref();

    let bad = session::login(
        &mut profiles,
        secrets,
        &id,
        "op@example.com",
        "wrong password",
    )
    .await
    .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Unauthenticated);
    assert_eq!(secrets.get(&key).unwrap(), None);

    let open_sessions = || async {
        app.db
            .texts("SELECT CAST(COUNT(*) AS TEXT) FROM sessions WHERE revoked_at IS NULL")
            .await
    };
    let sessions_before = open_sessions().await;
    let user = session::login(
        &mut profiles,
        secrets,
        &id,
        "op@example.com",
        airwave_tests::PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(user.role, Role::Operator);
    let token = secrets.get(&key).unwrap().expect("a token in the store");
    assert!(
        token.starts_with("awt_"),
        "an API token, not the login session"
    );
    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        !file.contains(&token),
        "the profiles file never holds the token"
    );
    assert!(file.contains("op@example.com"));

    let c = session::client(&profiles, secrets, &id).unwrap();
    assert_eq!(c.me().await.unwrap().email, "op@example.com");
    assert!(
        c.list_queues().await.is_ok(),
        "an operator's token can see the queues"
    );
    // The login session itself was ended: only the API token remains.
    assert_eq!(open_sessions().await, sessions_before);

    session::logout(&mut profiles, secrets, &id).await.unwrap();
    assert_eq!(secrets.get(&key).unwrap(), None);
    let revoked = airwave_api::ApiClient::new(app.url("/")).with_token(token.clone());
    assert_eq!(
        revoked.me().await.unwrap_err().status(),
        Some(401),
        "revoked on the server"
    );
    assert_eq!(
        session::client(&profiles, secrets, &id).unwrap_err().kind,
        ErrorKind::Unauthenticated
    );
    // Logging out twice is fine.
    session::logout(&mut profiles, secrets, &id).await.unwrap();
}

#[tokio::test]
async fn the_stream_reconnects_by_itself_and_resumes_across_a_restart() {
    let app = TestApp::spawn_with(&[
        ("AIRWAVE_HEALTH_CHECK_INTERVAL_MS", "200"),
        ("AIRWAVE_OPS_STATS_INTERVAL_MS", "100"),
    ])
    .await;
    app.user_with_role("sup@example.com", Role::Support).await;
    let token = app.login("sup@example.com").await.token;
    // The server's address changes on restart; the console would follow its profile. Here a
    // fixed local port in front stands for the profile's URL: a tiny TCP relay.
    let relay = Relay::start(app.url("/")).await;
    let mut sub = stream::subscribe(relay.url(), token.clone(), Some(0), 16);

    let mut ids = Vec::new();
    while ids.len() < 5 {
        let ev = tokio::time::timeout(Duration::from_secs(30), sub.events.recv())
            .await
            .unwrap()
            .unwrap();
        ids.push(ev.id.expect("every event has an id"));
    }
    assert_eq!(*sub.state.borrow(), ConnState::Live);

    let app = app.restart().await;
    relay.retarget(app.url("/"));
    // Events keep coming after the restart, and the ids continue without a gap or a repeat.
    let target = ids.len() + 10;
    while ids.len() < target {
        let ev = tokio::time::timeout(Duration::from_secs(30), sub.events.recv())
            .await
            .unwrap()
            .unwrap();
        ids.push(ev.id.unwrap());
    }
    let logged: Vec<i64> = app
        .db
        .texts(&format!(
            "SELECT CAST(id AS TEXT) FROM ops_events WHERE id >= {} AND id <= {} ORDER BY ops_events.id",
            ids[0],
            ids.last().unwrap()
        ))
        .await
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(
        ids, logged,
        "every event once, in order, across the restart"
    );
}

/// A TCP relay on a fixed local port to a target that can change (as a load balancer in front
/// of a restarted server).
struct Relay {
    port: u16,
    target: std::sync::Arc<std::sync::Mutex<std::net::SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: url::Url) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target =
            std::sync::Arc::new(std::sync::Mutex::new(to.socket_addrs(|| None).unwrap()[0]));
        let t = target.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let addr = *t.lock().unwrap();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, target, task }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/", self.port)).unwrap()
    }

    fn retarget(&self, to: url::Url) {
        *self.target.lock().unwrap() = to.socket_addrs(|| None).unwrap()[0];
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn the_local_profile_starts_a_sidecar_server_and_connects_as_its_admin() {
    use airwave_console_core::local::{self, LocalServer};
    let dir = tempfile::tempdir().unwrap();
    let bin = airwave_tests::server_bin();
    let data = dir.path().join("local-server");
    let cfg = dir.path().join("cfg/profiles.json");
    let secrets = MemoryStore::default();

    let server = LocalServer::start(&bin, &data).await.unwrap();
    let mut profiles = Profiles::load(&cfg).unwrap();
    let profile = local::bootstrap(&server, &bin, &mut profiles, &secrets)
        .await
        .unwrap();
    assert!(profile.local && !profile.production);
    let c = session::client(&profiles, &secrets, local::PROFILE_ID).unwrap();
    let me = c.me().await.unwrap();
    assert_eq!(
        (me.email.as_str(), me.role),
        (local::LOCAL_ADMIN, Role::Admin)
    );
    assert_eq!(
        c.health().await.unwrap().status,
        airwave_api::HealthStatus::Pass
    );
    let first = secrets.get(local::PROFILE_ID).unwrap().unwrap();

    // Restarted (a new port): the profile follows, the stored token still works and is kept.
    server.stop().await;
    let server = LocalServer::start(&bin, &data).await.unwrap();
    let mut profiles = Profiles::load(&cfg).unwrap();
    let again = local::bootstrap(&server, &bin, &mut profiles, &secrets)
        .await
        .unwrap();
    assert_eq!(again.url, server.url);
    assert_eq!(secrets.get(local::PROFILE_ID).unwrap().unwrap(), first);

    // The keychain lost it: a new token is issued for the same admin.
    secrets.delete(local::PROFILE_ID).unwrap();
    local::bootstrap(&server, &bin, &mut profiles, &secrets)
        .await
        .unwrap();
    let second = secrets.get(local::PROFILE_ID).unwrap().unwrap();
    assert_ne!(second, first);
    let c = session::client(&profiles, &secrets, local::PROFILE_ID).unwrap();
    assert_eq!(c.me().await.unwrap().email, local::LOCAL_ADMIN);
    let file = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !file.contains(&first) && !file.contains(&second),
        "no token in the profiles file"
    );
    server.stop().await;
}

/// Defect: re-adding a profile under an existing name with a new URL kept the old keychain token
/// and sent it to the new host. Now a token is bound to its origin: the new host never sees it.
#[tokio::test]
async fn a_profile_whose_url_changes_never_sends_its_token_to_the_new_host() {
    let app = TestApp::spawn().await;
    app.user_with_role("op@example.com", Role::Operator).await;
    let dir = tempfile::tempdir().unwrap();
    let mut profiles = Profiles::load(&dir.path().join("profiles.json")).unwrap();
    let secrets = MemoryStore::default();
    let name = format!("Moving {}", std::process::id());
    let profile = Profile::new(&name, app.url("/").as_str(), None, false).unwrap();
    let id = profile.id.clone();
    profiles.upsert(profile);
    session::login(
        &mut profiles,
        &secrets,
        &id,
        "op@example.com",
        airwave_tests::PASSWORD,
    )
    .await
    .unwrap();
    assert!(session::client(&profiles, &secrets, &id).is_ok());

    // Another host, listening and writing down every request's headers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}/", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            log.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = sock
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    // Re-added under the same name, pointing elsewhere.
    profiles.upsert(Profile::new(&name, &other, None, false).unwrap());
    let e = session::client(&profiles, &secrets, &id).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated, "a new login is needed");
    let _ = session::logout(&mut profiles, &secrets, &id).await;
    let headers = seen.lock().unwrap().clone();
    assert!(
        !headers.to_ascii_lowercase().contains("authorization"),
        "{headers}"
    );
    assert!(!headers.contains("awt_"), "{headers}");
}

/// A logged-in profile on `app` for `email`, its token in `secrets`.
async fn logged_in(
    app: &TestApp,
    profiles: &mut Profiles,
    secrets: &dyn SecretStore,
    email: &str,
    production: bool,
) -> String {
    let name = format!("P{} {email}", std::process::id());
    let mut profile = Profile::new(&name, app.url("/").as_str(), None, production).unwrap();
    profile.allow_plain_http = production;
    let id = profile.id.clone();
    profiles.upsert(profile);
    session::login(profiles, secrets, &id, email, airwave_tests::PASSWORD)
        .await
        .unwrap();
    id
}

/// Defect: the console's token expired after 90 days with no renewal, logging the operator out
/// mid-shift. Now a token with under 30 days left is replaced by a new one (made with the
/// current one, which is then revoked), and a live stream carries on with the new token.
#[tokio::test]
async fn the_console_renews_its_token_before_it_expires_and_the_stream_carries_on() {
    let app = TestApp::spawn_with(&[
        ("AIRWAVE_OPS_STREAM_REAUTH_S", "1"),
        ("AIRWAVE_OPS_STATS_INTERVAL_MS", "100"),
    ])
    .await;
    app.user_with_role("sup@example.com", Role::Support).await;
    let dir = tempfile::tempdir().unwrap();
    let mut profiles = Profiles::load(&dir.path().join("profiles.json")).unwrap();
    let secrets = std::sync::Arc::new(MemoryStore::default());
    let id = logged_in(
        &app,
        &mut profiles,
        secrets.as_ref(),
        "sup@example.com",
        false,
    )
    .await;
    let key = session::keychain_key(profiles.get(&id).unwrap());
    let old = secrets.get(&key).unwrap().unwrap();
    let expires = profiles
        .get(&id)
        .unwrap()
        .token_expires_at
        .expect("an expiry");
    assert!(expires > chrono::Utc::now() + chrono::Duration::days(89));

    // A stream on the keychain's token, as the console runs it.
    let source = {
        let (secrets, key) = (secrets.clone(), key.clone());
        std::sync::Arc::new(move || secrets.get(&key).ok().flatten()) as stream::TokenSource
    };
    let mut sub = stream::subscribe_with(app.url("/"), source, None, 64);
    tokio::time::timeout(Duration::from_secs(30), sub.events.recv())
        .await
        .unwrap()
        .unwrap();

    // Not due today; due once fewer than 30 days are left.
    let renewal = session::renew_if_due(&mut profiles, secrets.as_ref(), &id, chrono::Utc::now())
        .await
        .unwrap();
    assert!(matches!(renewal, session::Renewal::NotDue), "{renewal:?}");
    let later = expires - chrono::Duration::days(29);
    let renewal = session::renew_if_due(&mut profiles, secrets.as_ref(), &id, later)
        .await
        .unwrap();
    assert!(
        matches!(
            renewal,
            session::Renewal::Renewed {
                old_not_revoked: None
            }
        ),
        "{renewal:?}"
    );
    let new = secrets.get(&key).unwrap().unwrap();
    assert_ne!(new, old);
    let api = airwave_api::ApiClient::new(app.url("/"));
    assert_eq!(
        api.with_token(old).me().await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(
        api.with_token(new).me().await.unwrap().email,
        "sup@example.com"
    );
    assert!(profiles.get(&id).unwrap().token_expires_at.unwrap() > expires);

    // The old token's stream is ended by the server; the subscription resumes with the new one.
    let mut state = sub.state.clone();
    let mut went_down = false;
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match state.borrow_and_update().clone() {
                ConnState::Unauthorized => {
                    panic!("the stream gave up instead of using the new token")
                }
                ConnState::Live if went_down => break,
                ConnState::Live => {}
                _ => went_down = true,
            }
            state.changed().await.expect("the subscription runs");
        }
    })
    .await
    .expect("the stream resumes");
    tokio::time::timeout(Duration::from_secs(30), sub.events.recv())
        .await
        .unwrap()
        .unwrap();
}

/// Defect: a production profile over plain http sent its password and token unencrypted without
/// a word. Now it needs an explicit opt-in, and without one nothing is sent.
#[tokio::test]
async fn a_production_profile_over_plain_http_sends_nothing_without_an_explicit_opt_in() {
    let app = TestApp::spawn().await;
    app.user_with_role("op@example.com", Role::Operator).await;
    let dir = tempfile::tempdir().unwrap();
    let mut profiles = Profiles::load(&dir.path().join("profiles.json")).unwrap();
    let secrets = MemoryStore::default();
    let name = format!("Prod {}", std::process::id());
    let profile = Profile::new(&name, app.url("/").as_str(), None, true).unwrap();
    let id = profile.id.clone();
    profiles.upsert(profile);
    let audits = app.db.count("audit_log").await;
    let e = session::login(
        &mut profiles,
        &secrets,
        &id,
        "op@example.com",
        airwave_tests::PASSWORD,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("plain http"), "{}", e.message);
    assert_eq!(
        app.db.count("audit_log").await,
        audits,
        "the server saw no login"
    );

    // With the opt-in (which the UI shows on the profile), it works.
    let id = logged_in(&app, &mut profiles, &secrets, "op@example.com", true).await;
    assert!(profiles.get(&id).unwrap().allow_plain_http);
    let c = session::client(&profiles, &secrets, &id).unwrap();
    assert_eq!(c.me().await.unwrap().email, "op@example.com");
}

/// Defect: the console's HTTP client had no timeouts: a server that accepted the connection and
/// never answered hung the console's call for ever. Now the call fails, as "offline", in bounded
/// time (10 s to connect and 60 s in all by default; shorter here).
#[tokio::test]
async fn a_server_that_never_answers_is_an_error_in_bounded_time() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    // Accepts, reads, and never writes a byte.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let client =
        airwave_api::ApiClient::with_timeouts(url, Duration::from_secs(1), Duration::from_secs(1))
            .with_token("awt_x");
    let answer = tokio::time::timeout(Duration::from_secs(20), client.me())
        .await
        .expect("the call ends by itself");
    let e = airwave_console_core::Error::from(answer.unwrap_err());
    assert_eq!(e.kind, ErrorKind::Offline, "{}", e.message);
    assert_eq!(
        (
            airwave_api::CONNECT_TIMEOUT.as_secs(),
            airwave_api::REQUEST_TIMEOUT.as_secs()
        ),
        (10, 60)
    );
}
