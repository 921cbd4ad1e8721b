//! The local profile, the embedded default: with no server configured, the console starts its own
//! `airwave-server` (embedded defaults, its own data dir) as a sidecar, makes an admin for it once,
//! and connects with a token issued by the server's CLI — no password is ever shown, stored or
//! typed. The token goes to the secret store like any other profile's.

use crate::error::{Error, ErrorKind};
use crate::profiles::{Profile, Profiles};
use crate::secrets::SecretStore;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// The local admin the console acts as.
pub const LOCAL_ADMIN: &str = "ops-console@airwave.local";
pub const PROFILE_ID: &str = "local";

/// A running sidecar server; stopped (SIGTERM, then kill) when dropped or by [`LocalServer::stop`].
pub struct LocalServer {
    child: Child,
    pub url: Url,
    pub data_dir: PathBuf,
}

fn io(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("local server: {what}: {e}"))
}

fn command(bin: &Path, data_dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.env("AIRWAVE_DATA_DIR", data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

impl LocalServer {
    /// Starts `bin serve` on a free loopback port with `data_dir`, and waits until it listens.
    pub async fn start(bin: &Path, data_dir: &Path) -> Result<LocalServer, Error> {
        std::fs::create_dir_all(data_dir).map_err(|e| io("creating its data dir", e))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("server.log"))
            .map_err(|e| io("opening its log", e))?;
        let mut child = command(bin, data_dir)
            .args(["serve", "--role", "all"])
            .env("AIRWAVE_BIND", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| io(&format!("starting {}", bin.display()), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io("reading its output", "no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .map_err(|_| {
                io(
                    "starting",
                    "it did not listen within 60 s (see server.log in its data dir)",
                )
            })?
            .map_err(|e| io("reading its output", e))?
            .ok_or_else(|| {
                io(
                    "starting",
                    "it exited at once (see server.log in its data dir)",
                )
            })?;
        let url = first
            .strip_prefix("airwave-server listening on ")
            .and_then(|u| Url::parse(u.trim()).ok())
            .ok_or_else(|| io("starting", format!("unexpected first line `{first}`")))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(LocalServer {
            child,
            url,
            data_dir: data_dir.to_owned(),
        })
    }

    /// SIGTERM, then waits up to 30 s (the server finishes or releases its jobs).
    pub async fn stop(mut self) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn cli(
    bin: &Path,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String, Error> {
    let mut c = command(bin, data_dir);
    c.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = c.output().await.map_err(|e| io("running its CLI", e))?;
    if !out.status.success() {
        return Err(io(
            &format!("`{}`", args.join(" ")),
            crate::secrets::redact(String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Makes sure profile `local` points at `server` and holds a working admin token: creates the
/// local admin once (with a random password nobody needs), and issues a new token whenever the
/// store has none that the server accepts.
pub async fn bootstrap(
    server: &LocalServer,
    bin: &Path,
    profiles: &mut Profiles,
    secrets: &dyn SecretStore,
) -> Result<Profile, Error> {
    let mut profile = match profiles.get(PROFILE_ID) {
        Ok(p) => p.clone(),
        Err(_) => {
            let mut p = Profile::new("Local", server.url.as_str(), Some("#16a34a"), false)?;
            p.local = true;
            p
        }
    };
    profile.url = server.url.clone();
    profile.email = Some(LOCAL_ADMIN.into());
    profiles.upsert(profile.clone());
    profiles.save()?;

    let works = match secrets.get(PROFILE_ID)? {
        Some(token) => airwave_api::ApiClient::new(server.url.clone())
            .with_token(token)
            .me()
            .await
            .is_ok(),
        None => false,
    };
    if !works {
        let password: String = {
            use rand::Rng as _;
            rand::thread_rng()
                .sample_iter(&rand::distributions::Alphanumeric)
                .take(48)
                .map(char::from)
                .collect()
        };
        // Once per data dir; "taken" means it exists already, which is what we want.
        if let Err(e) = cli(
            bin,
            &server.data_dir,
            &[
                "admin",
                "create-user",
                "--email",
                LOCAL_ADMIN,
                "--role",
                "admin",
                "--name",
                "Local console",
            ],
            &[("AIRWAVE_ADMIN_PASSWORD", &password)],
        )
        .await
        {
            if !e.message.contains("taken") && !e.message.contains("exists") {
                return Err(e);
            }
        }
        let token = cli(
            bin,
            &server.data_dir,
            &[
                "admin",
                "issue-token",
                "--email",
                LOCAL_ADMIN,
                "--name",
                "AIrWAVE Ops console (local)",
            ],
            &[],
        )
        .await?;
        secrets.set(PROFILE_ID, &token)?;
    }
    Ok(profile)
}
