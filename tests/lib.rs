//! The black-box test harness: spawns the real `airwave-server` binary on a free port with a
//! fresh database (a new PostgreSQL database per test, or a temp SQLite file), and talks to it
//! over HTTP with `airwave-api`'s client.
//!
//! The database comes from `AIRWAVE_TEST_DB` (`sqlite`, the default, or `postgres`, which needs
//! `AIRWAVE_TEST_PG_URL`); `scripts/test` runs the suite once per database. Server logs are
//! shown with `TEST_LOG=1`.

use airwave_api::{ApiClient, LoginOut, RegisterIn, Role, UserOut};
use anyhow::Context as _;
use sqlx::{PgPool, SqlitePool};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use url::Url;

pub const PASSWORD: &str = "correct horse battery staple";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("AIRWAVE_TEST_DB").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("AIRWAVE_TEST_DB is `{other}`; expected sqlite or postgres"),
    }
}

/// The path of the server binary, built once per test process.
pub fn server_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("AIRWAVE_SERVER_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/it-… → target/<profile>/airwave-server
        let exe = std::env::current_exe().expect("current exe");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
        let bin = dir.join(format!("airwave-server{}", std::env::consts::EXE_SUFFIX));
        // Build (or refresh) it with the workspace's feature resolution (as `cargo test --workspace`
        // and scripts/test resolve them, so neither invalidates the other): cargo does not build
        // another package's binary for tests.
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "--workspace", "--bin", "airwave-server"]);
        // Cargo sets per-package variables (CARGO_MANIFEST_DIR, …) for this test process; build
        // scripts watch some of them (ring watches CARGO_MANIFEST_DIR), so passing them on would
        // make the nested build look dirty and recompile half the tree.
        for (key, _) in std::env::vars() {
            if key.starts_with("CARGO_")
                && !matches!(
                    key.as_str(),
                    "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_BUILD_TARGET_DIR"
                )
            {
                build.env_remove(key);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build --bin airwave-server failed");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
    .clone()
}

/// A direct connection to the test's database, for assertions a client cannot make.
pub enum TestDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl TestDb {
    /// `SELECT COUNT(*) FROM table`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self {
            TestDb::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
            TestDb::Sqlite(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of `table`, each as one line of text holding every column's value.
    pub async fn dump(&self, table: &str) -> Vec<String> {
        match self {
            TestDb::Postgres(p) => {
                sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                    .fetch_all(p)
                    .await
                    .expect("dump")
            }
            TestDb::Sqlite(p) => {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(p)
                        .await
                        .expect("dump");
                let expr = cols
                    .iter()
                    .map(|c| format!("quote({c})"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                sqlx::query_scalar(&format!("SELECT {expr} FROM {table}"))
                    .fetch_all(p)
                    .await
                    .expect("dump")
            }
        }
    }

    /// `SELECT COUNT(*) FROM table WHERE condition`.
    pub async fn count_where(&self, table: &str, condition: &str) -> i64 {
        self.count(&format!("{table} WHERE {condition}")).await
    }

    /// One text column of the first row of a query with one text parameter.
    pub async fn text(&self, sql: &str, param: &str) -> Option<String> {
        match self {
            TestDb::Postgres(p) => sqlx::query_scalar(sql).bind(param).fetch_optional(p).await,
            TestDb::Sqlite(p) => sqlx::query_scalar(sql).bind(param).fetch_optional(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every value of one text column.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        match self {
            TestDb::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            TestDb::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a statement (for tests that move data, e.g. expire a token).
    pub async fn execute(&self, sql: &str) {
        match self {
            TestDb::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            TestDb::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The user tables and their row counts, to show that a bad request changed nothing.
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for t in [
            "users",
            "sessions",
            "api_tokens",
            "password_resets",
            "login_throttle",
            "clients",
            "client_memberships",
            "assets",
            "campaigns",
            "matrices",
            "executions",
            "renders",
            "approval_workflows",
            "exports",
            "events",
            "audit_log",
            "emails",
        ] {
            out.push((t.to_string(), self.count(t).await));
        }
        out
    }
}

/// A running server with its own data dir and database.
/// A message the outbox transport wrote (`<data dir>/outbox/<id>.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct OutboxMail {
    pub id: String,
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl OutboxMail {
    /// Its template (the `template` tag).
    pub fn template(&self) -> &str {
        self.tags
            .iter()
            .find(|(k, _)| k == "template")
            .map_or("", |(_, v)| v.as_str())
    }
}

pub struct TestApp {
    pub base: Url,
    /// A client without credentials.
    pub api: ApiClient,
    pub db: TestDb,
    pub backend: Backend,
    env: Vec<(String, String)>,
    data_dir: tempfile::TempDir,
    child: Child,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Spawns with extra environment variables.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        Self::try_spawn(extra, "all")
            .await
            .expect("spawn airwave-server")
    }

    /// Spawns the API alone (`serve --role api`): no workers run until [`TestApp::spawn_worker`].
    pub async fn spawn_api_only(extra: &[(&str, &str)]) -> TestApp {
        Self::try_spawn(extra, "api")
            .await
            .expect("spawn airwave-server")
    }

    async fn try_spawn(extra: &[(&str, &str)], role: &str) -> anyhow::Result<TestApp> {
        let backend = backend();
        let data_dir = tempfile::tempdir()?;
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", data_dir.path().join("airwave.db").display()),
            Backend::Postgres => {
                let admin = std::env::var("AIRWAVE_TEST_PG_URL").context(
                    "AIRWAVE_TEST_DB=postgres needs AIRWAVE_TEST_PG_URL (scripts/test sets it)",
                )?;
                let name = format!("airwave_test_{}", uuid_like());
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await?;
                let mut url = Url::parse(&admin)?;
                url.set_path(&name);
                url.to_string()
            }
        };
        let mut env: Vec<(String, String)> = vec![
            (
                "AIRWAVE_DATA_DIR".into(),
                data_dir.path().display().to_string(),
            ),
            ("AIRWAVE_BIND".into(), "127.0.0.1:0".into()),
            ("DATABASE_URL".into(), database_url.clone()),
            // No 03:00 UTC backup of its own: a suite that runs at three o'clock sees only the
            // backups its tests ask for (the schedule test sets its own).
            ("AIRWAVE_BACKUP_SCHEDULE".into(), "off".into()),
            // Every response is written down and checked against the OpenAPI document when
            // the test ends (see `contract`).
            (
                "AIRWAVE_RECORD_RESPONSES".into(),
                data_dir
                    .path()
                    .join(contract::RECORDING)
                    .display()
                    .to_string(),
            ),
            (
                "RUST_LOG".into(),
                if std::env::var("TEST_LOG").is_ok() {
                    "info".into()
                } else {
                    "error".into()
                },
            ),
        ];
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let (child, base) = start_server(&env, data_dir.path(), role).await?;
        contract::load_document(&base).await?;
        let db = match backend {
            Backend::Sqlite => TestDb::Sqlite(SqlitePool::connect(&database_url).await?),
            Backend::Postgres => TestDb::Postgres(PgPool::connect(&database_url).await?),
        };
        Ok(TestApp {
            api: ApiClient::new(base.clone()),
            base,
            db,
            backend,
            env,
            data_dir,
            child,
        })
    }

    /// Stops the server (SIGTERM) and starts it again on the same database and data dir — a
    /// restart, as a deploy does it. The address changes; `api` follows it.
    pub async fn restart(mut self) -> TestApp {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server stops within 30 s")
            .expect("wait");
        let (child, base) = start_server(&self.env, self.data_dir.path(), "all")
            .await
            .expect("restart airwave-server");
        self.child = child;
        self.api = ApiClient::new(base.clone());
        self.base = base;
        self
    }
}

/// Starts `airwave-server serve --role ROLE` with `env`; returns it and its address.
async fn start_server(
    env: &[(String, String)],
    data_dir: &std::path::Path,
    role: &str,
) -> anyhow::Result<(Child, Url)> {
    {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))?;
        let mut cmd = Command::new(server_bin());
        cmd.args(["serve", "--role", role])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if std::env::var("TEST_LOG").is_ok() {
                Stdio::inherit()
            } else {
                Stdio::from(log)
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the server did not start within 60 s")??
            .context("the server exited before listening (run with TEST_LOG=1)")?;
        let addr = line
            .strip_prefix("airwave-server listening on ")
            .context("unexpected first line")?
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let base = Url::parse(&addr)?;
        Ok((child, base))
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("url")
    }

    /// The environment the server was started with (beyond the test process's own).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// Runs the server binary's CLI against this app's database and data dir.
    pub async fn cli(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
        stdin: Option<&str>,
    ) -> std::process::Output {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = Command::new(server_bin());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cli");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.expect("write stdin");
        }
        drop(input);
        child.wait_with_output().await.expect("cli output")
    }

    /// Registers a member (following the link in the confirmation e-mail) and logs them in.
    pub async fn member(&self, email: &str) -> (UserOut, ApiClient) {
        self.api
            .register(&RegisterIn {
                email: email.into(),
                password: PASSWORD.into(),
                name: "Test User".into(),
            })
            .await
            .expect("register");
        let mail = self
            .last_email_to(email)
            .await
            .expect("a confirmation e-mail");
        let user = self
            .api
            .confirm_registration(&token_in(&mail), PASSWORD)
            .await
            .expect("confirm registration");
        let login = self.login(email).await;
        (user, self.api.with_token(login.token))
    }

    pub async fn login(&self, email: &str) -> LoginOut {
        self.api.login(email, PASSWORD).await.expect("login")
    }

    /// A user with the given role (made with the CLI, as an operator would), logged in.
    pub async fn user_with_role(&self, email: &str, role: Role) -> (UserOut, ApiClient) {
        let out = self
            .cli(
                &[
                    "admin",
                    "create-user",
                    "--email",
                    email,
                    "--role",
                    role.as_str(),
                    "--name",
                    "Staff",
                ],
                &[("AIRWAVE_ADMIN_PASSWORD", PASSWORD)],
                None,
            )
            .await;
        assert!(
            out.status.success(),
            "create-user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let login = self.login(email).await;
        let client = self.api.with_token(login.token);
        (login.user, client)
    }

    /// The newest e-mail sent to an address (the e-mail outbox).
    /// The text of the newest message (other than a `welcome`) delivered to `to`, once every
    /// recorded message has been sent.
    pub async fn last_email_to(&self, to: &str) -> Option<String> {
        self.settle_mail().await;
        self.outbox()
            .into_iter()
            .rev()
            .find(|m| m.to == to && m.template() != "welcome")
            .map(|m| m.text)
    }

    /// The newest message of `template` delivered to `to`, waiting up to 20 s for it.
    pub async fn mail_to(&self, to: &str, template: &str) -> Option<OutboxMail> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self
                .outbox()
                .into_iter()
                .rev()
                .find(|m| m.to == to && m.template() == template)
            {
                return Some(m);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 60 s) until no recorded message is waiting to be sent.
    pub async fn settle_mail(&self) {
        // Generous: on a loaded machine a separate worker process may take a while to start.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.db.count_where("emails", "status = 'queued'").await > 0
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every message in the outbox folder, oldest first.
    pub fn outbox(&self) -> Vec<OutboxMail> {
        let dir = self.data_dir.path().join("outbox");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }

    /// Starts a separate worker process (`serve --role worker`) on this app's database and data dir.
    pub fn spawn_worker(&self) -> WorkerProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("workers.log"))
            .expect("worker log");
        let child = Command::new(server_bin())
            .args(["serve", "--role", "worker"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn worker");
        WorkerProcess { child }
    }

    /// A raw request, for what the typed client cannot express (malformed bodies).
    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// An HTTP client whose connections come from `ip` (any 127.x.y.z on Linux): another client
    /// address, as the server sees it.
    pub fn http_from(&self, ip: [u8; 4]) -> reqwest::Client {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// An image asset of `client_id` whose file is `bytes` (a PNG, JPEG or GIF), uploaded.
    pub async fn image_asset(
        &self,
        member: &ApiClient,
        client_id: &str,
        name: &str,
        bytes: &[u8],
    ) -> airwave_api::AssetOut {
        let asset = member
            .create_asset(&airwave_api::AssetIn {
                client_id: client_id.into(),
                type_: airwave_api::AssetType::Image,
                name: name.into(),
                metadata: Default::default(),
            })
            .await
            .expect("create the asset");
        let content_type = match bytes.get(..3) {
            Some([0xFF, 0xD8, 0xFF]) => "image/jpeg",
            Some(b"GIF") => "image/gif",
            _ => "image/png",
        };
        member
            .upload_asset(
                &asset.id,
                content_type,
                Some(&format!("{name}.png")),
                bytes.to_vec(),
            )
            .await
            .expect("upload the asset's file")
    }

    /// Where the folder backend keeps an asset's file (the key from the database).
    pub async fn blob_path(&self, asset_id: &str) -> std::path::PathBuf {
        let key = self
            .db
            .text("SELECT storage_key FROM assets WHERE id = $1", asset_id)
            .await
            .expect("the asset has a file");
        self.data_dir().join("blobs").join(key)
    }

    /// The server process's peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Stops the server with SIGTERM and waits for it; returns its exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("server stops within 30 s")
            .expect("wait")
    }
}

/// A worker process of a [`TestApp`].
pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL: the process dies at once, holding whatever it held.
    pub async fn kill_hard(mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("reaped");
    }
}

impl Drop for TestApp {
    /// A failing test shows its server's log (warnings and errors) under the failure; a passing
    /// one fails if any response its server sent differs from the OpenAPI document.
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(log) = std::fs::read_to_string(self.data_dir.path().join("server.log")) {
                eprintln!(
                    "--- server log ({}) ---\n{log}--- end of server log ---",
                    self.base
                );
            }
            // Separate worker processes (`spawn_worker`) write here.
            if let Ok(log) = std::fs::read_to_string(self.data_dir.path().join("workers.log")) {
                let tail: Vec<&str> = log.lines().rev().take(200).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                eprintln!(
                    "--- workers' log (last {} lines) ---\n{}\n--- end of workers' log ---",
                    tail.len(),
                    tail.join("\n")
                );
            }
            return;
        }
        let drift = contract::check(&self.data_dir.path().join(contract::RECORDING));
        assert!(
            drift.is_empty(),
            "responses that differ from /api/openapi.json:\n{}",
            drift.join("\n")
        );
    }
}

pub mod contract;
pub mod mail;
pub mod sentry_ingest;

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:x}_{}_{n}", nanos, std::process::id())
}

/// A campaign with one matrix of `template` for the client; returns the matrix id.
pub async fn matrix_for(c: &ApiClient, client_id: &str, template: serde_json::Value) -> String {
    let campaign = c
        .create_campaign(&airwave_api::CampaignIn {
            client_id: client_id.into(),
            name: "Summer".into(),
            description: None,
        })
        .await
        .expect("create campaign");
    let template = template
        .as_object()
        .cloned()
        .expect("a template is a JSON object");
    c.create_matrix(
        &campaign.id,
        &airwave_api::MatrixIn {
            name: "Square".into(),
            template,
        },
    )
    .await
    .expect("create matrix")
    .id
}

/// Polls an execution until it leaves `queued`/`rendering` (the worker is asynchronous), for at
/// most 60 s; returns its final state.
pub async fn finished_execution(client: &ApiClient, id: &str) -> airwave_api::ExecutionOut {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = client.get_execution(id).await.expect("get execution");
        if !matches!(
            e.status,
            airwave_api::ExecutionStatus::Queued | airwave_api::ExecutionStatus::Rendering
        ) || tokio::time::Instant::now() > deadline
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls `probe` until it returns `Some` (for at most 60 s) — for what a worker records after the
/// request that caused it returned (a job's own state follows its execution's by a moment).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A link's `token` query parameter.
pub fn token_in(text: &str) -> String {
    let start = text.find("token=").expect("a link with a token") + "token=".len();
    let rest = &text[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    url::form_urlencoded::parse(format!("t={}", &rest[..end]).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .expect("token")
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }

    pub fn id_num(&self) -> i64 {
        self.id
            .as_deref()
            .expect("an id")
            .parse()
            .expect("a numeric id")
    }
}

/// A Server-Sent Events reader over a streaming response (a plain HTTP client, as the console's
/// core is one), decoded by `eventsource-stream`.
pub struct SseStream {
    events: std::pin::Pin<
        Box<
            dyn futures_util::Stream<
                    Item = Result<
                        eventsource_stream::Event,
                        eventsource_stream::EventStreamError<reqwest::Error>,
                    >,
                > + Send,
        >,
    >,
}

impl SseStream {
    /// Opens `path` with a bearer token, and `Last-Event-ID` when given.
    pub async fn open(
        app: &TestApp,
        path: &str,
        token: &str,
        last_event_id: Option<&str>,
    ) -> Result<SseStream, reqwest::Response> {
        use eventsource_stream::Eventsource as _;
        let mut req = reqwest::Client::new()
            .get(app.url(path))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.expect("request");
        if resp.status() != 200 {
            return Err(resp);
        }
        Ok(SseStream {
            events: Box::pin(resp.bytes_stream().eventsource()),
        })
    }

    /// The next event (comments and keep-alives skipped); `None` after `within` or at the end.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        use futures_util::StreamExt as _;
        match tokio::time::timeout(within, self.events.next()).await {
            Ok(Some(Ok(e))) => Some(SseEvent {
                id: (!e.id.is_empty()).then_some(e.id),
                event: e.event,
                data: e.data,
            }),
            _ => None,
        }
    }

    /// Whether the server ended the stream within `within` (events before the end are skipped).
    pub async fn ended_within(&mut self, within: Duration) -> bool {
        use futures_util::StreamExt as _;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.events.next()).await {
                Ok(None | Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => {}
                Err(_) => return false,
            }
        }
    }

    /// Reads until an event matches `pred` (within `within` in all); returns it and what came before.
    pub async fn until(
        &mut self,
        within: Duration,
        pred: impl Fn(&SseEvent) -> bool,
    ) -> (SseEvent, Vec<SseEvent>) {
        let deadline = tokio::time::Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(ev) = self.next(left).await else {
                panic!("no matching event within {within:?}; got {before:?}");
            };
            if pred(&ev) {
                return (ev, before);
            }
            before.push(ev);
        }
    }
}

/// A free loopback port (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A private `redis-server` on `port` with no persistence and its files in `dir`, for tests that
/// stop it to make the queue fail for real (stopping it disturbs no other test).
pub fn spawn_redis(port: u16, dir: &std::path::Path) -> std::io::Result<std::process::Child> {
    std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
}
