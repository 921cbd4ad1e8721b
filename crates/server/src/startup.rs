//! Start-up: the one place where backends are chosen and the application is assembled.
//! `Application::build` binds its own listener (port 0 works in tests) and `run_until_stopped`
//! serves until the cancellation token fires, then drains in-flight requests.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Environment};
use crate::db::Db;
use crate::feature::{Backends, Feature, RoutesOnly, Runs};
use crate::health::HealthRegistry;
use crate::queue::redis::RedisQueue;
use crate::queue::sql::SqlQueue;
use crate::queue::JobQueue;
use crate::render::local::LocalRenderer;
use crate::state::AppState;
use crate::storage::BlobStore;
use anyhow::Context as _;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretSlice};
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may run on after a stop signal.
const SHUTDOWN_GRACE: Duration = crate::feature::SHUTDOWN_GRACE;

/// Every feature of the server. Adding one is its folder plus one line here.
pub fn features() -> Vec<Arc<dyn Feature>> {
    vec![
        Arc::new(crate::health::Feature),
        Arc::new(crate::tracking::Feature),
        Arc::new(RoutesOnly {
            name: "auth",
            routes: crate::auth::routes::routes,
        }),
        Arc::new(RoutesOnly {
            name: "clients",
            routes: crate::clients::routes::routes,
        }),
        Arc::new(RoutesOnly {
            name: "db",
            routes: crate::db::routes::routes,
        }),
        Arc::new(crate::storage::Feature),
        Arc::new(crate::assets::Feature),
        Arc::new(crate::backups::Feature),
        Arc::new(crate::exports::Feature),
        Arc::new(RoutesOnly {
            name: "campaigns",
            routes: crate::campaigns::routes::routes,
        }),
        Arc::new(RoutesOnly {
            name: "approvals",
            routes: crate::approvals::routes::routes,
        }),
        Arc::new(crate::email::Feature),
        Arc::new(crate::webhooks::Feature),
        Arc::new(crate::render::Feature),
        Arc::new(crate::queue::Feature),
        Arc::new(crate::events::Feature),
        Arc::new(crate::ops::Feature),
    ]
}

/// Connects the database, applies migrations and assembles the shared state; fails when the
/// database or Redis cannot be reached (the CLI's commands).
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    build(config, clock, Startup::Strict).await
}

/// Whether start-up waits for the database and Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Startup {
    /// Connect and migrate now, or fail.
    Strict,
    /// Start anyway: the server answers `/api/health/live`, reports the failing component in
    /// `/api/health`, answers other requests `503 starting`, and keeps retrying in the background.
    Resilient,
}

async fn build(
    config: Config,
    clock: Arc<dyn Clock>,
    startup: Startup,
) -> anyhow::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data dir {} (AIRWAVE_DATA_DIR)",
            config.data_dir.display()
        )
    })?;
    let signing_key = match &config.jwt_secret {
        Some(s) => SecretSlice::from(s.expose_secret().as_bytes().to_vec()),
        None if config.env == Environment::Development => {
            load_or_create_dev_secret(&config.data_dir)?
        }
        None => anyhow::bail!("JWT_SECRET is required in production"),
    };
    let ready = Arc::new(crate::state::Ready::default());
    let mut migrated = false;
    let db = match startup {
        // `ready` is set once the consumers are registered too (below).
        Startup::Strict => {
            let db = Db::connect(&config.database).await?;
            db.migrate().await?;
            migrated = true;
            db
        }
        Startup::Resilient => {
            let db = Db::connect_lazy(&config.database).await?;
            match db.migrate().await {
                Ok(()) => migrated = true,
                // A migration that cannot apply (not an unreachable database) stops start-up.
                Err(e) if !crate::db::is_unreachable(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "the database is not reachable yet; serving health and retrying")
                }
            }
            db
        }
    };
    let queue: Arc<dyn JobQueue> = match &config.queue.redis_url {
        Some(url) => {
            let redis = RedisQueue::new(
                url.expose().as_str(),
                "airwave",
                clock.clone(),
                db.clone(),
                config.queue.policies.clone(),
            )
            .context("REDIS_URL is not a usable Redis URL")?;
            if startup == Startup::Strict {
                redis
                    .ping()
                    .await
                    .context("cannot connect to Redis (REDIS_URL)")?;
            }
            Arc::new(redis)
        }
        None => Arc::new(SqlQueue::new(
            db.clone(),
            clock.clone(),
            config.queue.policies.clone(),
        )),
    };
    let mut blobs: Arc<dyn BlobStore> = config.storage.open().await;
    let mut backup_blobs: Option<Arc<dyn BlobStore>> = None;
    if let Some(b) = &config.backup_bucket {
        backup_blobs = Some(Arc::new(
            crate::storage::s3::S3Store::connect(&b.options).await,
        ));
        blobs = Arc::new(crate::storage::mirror::Mirrored::new(
            blobs,
            queue.clone(),
            clock.clone(),
            b.keep_deleted,
        ));
    }
    // The render provider, chosen once here like every backend.
    let renderer: Arc<dyn crate::render::RenderProvider> =
        match (config.render.provider, &config.render.creatomate_api_key) {
            (crate::render::settings::Provider::Creatomate, Some(key)) => {
                Arc::new(crate::render::creatomate::CreatomateRenderer::new(
                    config.render.creatomate_url.clone(),
                    key.clone(),
                    config.render.creatomate_poll,
                    config.render.creatomate_timeout,
                    config.render.creatomate_output_hosts.clone(),
                ))
            }
            _ => {
                let rasteriser = crate::render::local::Rasteriser::from_config(&config.render)
                    .context("cannot find this binary to rasterise renders with")?;
                Arc::new(LocalRenderer::new(db.clone(), blobs.clone(), rasteriser))
            }
        };
    let features = features();
    let config = Arc::new(config);
    let ops_appended = Arc::new(tokio::sync::Notify::new());
    let mut backends = Backends {
        ops: crate::ops::Publisher::new(db.clone(), ops_appended.clone()),
        db: db.clone(),
        clock: clock.clone(),
        config: config.clone(),
        queue: queue.clone(),
        blobs: blobs.clone(),
        renderer: renderer.clone(),
        consumers: Arc::from(Vec::new()),
    };
    let consumers: Vec<_> = features
        .iter()
        .flat_map(|f| f.consumers(&backends))
        .collect();
    backends.consumers = Arc::from(consumers);
    // The consumers' rows exist before the first request can commit an event.
    if migrated {
        match crate::events::dispatcher::register_consumers(
            &db,
            clock.as_ref(),
            &backends.consumers,
        )
        .await
        {
            Ok(()) => ready.set(),
            Err(e) if startup == Startup::Strict => return Err(e.into()),
            // Retried with the migrations before the workers start (`wait_for_database`).
            Err(e) => {
                tracing::warn!(error = %e, "registering the event consumers failed; retrying")
            }
        }
    }
    let supervisor = Arc::new(crate::supervise::Supervisor::default());
    let mut health = HealthRegistry::new(Duration::from_secs(3));
    for check in features.iter().flat_map(|f| f.health_checks(&backends)) {
        health.register(check);
    }
    health.register(Arc::new(crate::supervise::WorkersCheck(supervisor.clone())));
    let streams = Arc::new(crate::ops::streams::Streams::new(
        config.ops.streams_per_user,
        config.ops.streams_max,
    ));
    Ok(AppState {
        db,
        clock,
        config,
        signing_key: Arc::new(signing_key),
        health: Arc::new(health),
        queue,
        blobs,
        backup_blobs,
        ops_appended,
        consumers: backends.consumers,
        supervisor,
        renderer,
        features: Arc::from(features),
        ready,
        streams,
    })
}

/// The development signing key: made once per data dir (mode 0600) and kept, so sessions survive
/// restarts. Production must set `JWT_SECRET`.
fn load_or_create_dev_secret(dir: &Path) -> anyhow::Result<SecretSlice<u8>> {
    let path = dir.join("jwt_secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| {
                format!(
                    "{} is not base64; delete it to make a new one",
                    path.display()
                )
            })?;
        anyhow::ensure!(
            bytes.len() >= 32,
            "{} is too short; delete it to make a new one",
            path.display()
        );
        return Ok(SecretSlice::from(bytes));
    }
    let mut bytes = vec![0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    // Written whole to a private temporary file, then put in place only if no other process
    // did first: a reader never sees half a key.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    {
        use std::io::Write as _;
        tmp.write_all(
            base64::engine::general_purpose::STANDARD
                .encode(&bytes)
                .as_bytes(),
        )?;
        tmp.as_file().sync_all()?;
    }
    match tmp.persist_noclobber(&path) {
        Ok(_) => {
            tracing::info!(path = %path.display(), "generated a development signing key");
            Ok(SecretSlice::from(bytes))
        }
        // Another process made it first: use theirs.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            load_or_create_dev_secret(dir)
        }
        Err(e) => Err(e.error).with_context(|| format!("cannot write {}", path.display())),
    }
}

/// What this process runs (`serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The HTTP API only.
    Api,
    /// Background workers only: the outbox dispatcher and the queue workers.
    Worker,
    /// Both (the default).
    All,
}

pub struct Application {
    role: Role,
    router: axum::Router,
    listener: Option<tokio::net::TcpListener>,
    addr: Option<SocketAddr>,
    state: AppState,
}

impl Application {
    /// Builds the state and binds the listener (unless the role is `worker`).
    pub async fn build(mut config: Config, role: Role) -> anyhow::Result<Self> {
        let bind = config.bind;
        let (listener, addr) = if role == Role::Worker {
            (None, None)
        } else {
            let l = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind} (AIRWAVE_BIND)"))?;
            let addr = l.local_addr()?;
            (Some(l), Some(addr))
        };
        // The default public URL names the bind address; with port 0 that is the port we got.
        if let Some(addr) = addr.filter(|_| config.public_url.port() == Some(0)) {
            let _ = config.public_url.set_port(Some(addr.port()));
        }
        let state = build(config, Arc::new(SystemClock), Startup::Resilient).await?;
        let router = crate::http::router(state.clone());
        Ok(Self {
            role,
            router,
            listener,
            addr,
            state,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `cancel` fires, then stops accepting and lets in-flight requests finish
    /// (up to a grace period).
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let db = self.state.db.clone();
        // Every feature's tasks, supervised; the worker role's only where this process works.
        // They start once the database is migrated (at once, unless it was unreachable).
        let fatal = Arc::new(std::sync::Mutex::new(None));
        let tasks = {
            let (state, role, cancel, fatal) =
                (self.state.clone(), self.role, cancel.clone(), fatal.clone());
            tokio::spawn(async move {
                if !state.ready.is_set() && !wait_for_database(&state, &cancel, &fatal).await {
                    return;
                }
                let supervisor = state.supervisor.clone();
                let late_stop = CancellationToken::new();
                let (mut tasks, mut late) =
                    (tokio::task::JoinSet::new(), tokio::task::JoinSet::new());
                for feature in state.features.iter() {
                    for task in feature.tasks(&state) {
                        let (set, stop) = match task.runs {
                            Runs::Workers if role == Role::Api => continue,
                            Runs::Workers | Runs::EveryRole => (&mut tasks, cancel.clone()),
                            Runs::EveryRoleStoppedLast => (&mut late, late_stop.clone()),
                        };
                        let name = task.name.clone();
                        supervisor
                            .spawn(set, &name, stop.clone(), move || task.start(stop.clone()));
                    }
                }
                while tasks.join_next().await.is_some() {}
                late_stop.cancel();
                while late.join_next().await.is_some() {}
            })
        };
        if let Some(listener) = self.listener {
            let app = self
                .router
                .into_make_service_with_connect_info::<SocketAddr>();
            let (stop, streams) = (cancel.clone(), self.state.streams.clone());
            // Streams never finish by themselves: end them first, so in-flight requests alone
            // are waited for (clients resume with `Last-Event-ID`).
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                stop.cancelled().await;
                streams.close();
            });
            let mut server = std::pin::pin!(server.into_future());
            tokio::select! {
                res = &mut server => res.context("the HTTP server failed")?,
                () = async { cancel.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    tracing::warn!("in-flight requests did not finish within {} s; stopping anyway", SHUTDOWN_GRACE.as_secs());
                }
            }
        } else {
            cancel.cancelled().await;
        }
        let _ = tasks.await;
        db.close().await;
        if let Some(e) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        Ok(())
    }
}

/// Retries the migrations with backoff until they ran (`true`) or `stop` fires (`false`). A
/// migration that fails for another reason than an unreachable database (a changed or missing
/// migration, a failing statement) cannot heal by waiting: it stops the server (`stop` fires,
/// `fatal` keeps the reason) instead of answering `503 starting` for ever.
async fn wait_for_database(
    state: &AppState,
    stop: &CancellationToken,
    fatal: &std::sync::Mutex<Option<anyhow::Error>>,
) -> bool {
    let mut wait = Duration::from_millis(500);
    loop {
        let migrated = match state.db.migrate().await {
            Ok(()) => crate::events::dispatcher::register_consumers(
                &state.db,
                state.clock.as_ref(),
                &state.consumers,
            )
            .await
            // The database error itself, so an unreachable database reads as one.
            .map_err(|e| match e {
                crate::events::dispatcher::DispatchError::Database(e) => anyhow::Error::from(e),
                other => anyhow::Error::from(other),
            }),
            Err(e) => Err(e),
        };
        match migrated {
            Ok(()) => {
                tracing::info!("the database is reachable and migrated; starting the workers");
                state.ready.set();
                return true;
            }
            Err(e) if !crate::db::is_unreachable(&e) => {
                tracing::error!(error = %format!("{e:#}"), "the database's migrations cannot be applied; stopping");
                *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                stop.cancel();
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis(), "the database is not reachable yet");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// A token cancelled by SIGINT or SIGTERM. The handlers are installed before this returns, so a
/// signal that arrives at any later moment stops the server cleanly.
pub fn shutdown_signal() -> anyhow::Result<CancellationToken> {
    let token = CancellationToken::new();
    let t = token.clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("stop signal received; shutting down");
            t.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    Ok(token)
}
