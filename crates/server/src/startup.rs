//! Start-up: the one place where backends are chosen and the application is assembled.
//! `Application::build` binds its own listener (port 0 works in tests) and `run_until_stopped`
//! serves until the cancellation token fires, then drains in-flight requests.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Environment};
use crate::db::Db;
use crate::events::dispatcher::{DispatchPolicy, Dispatcher};
use crate::health::{DatabaseCheck, HealthRegistry};
use crate::queue::redis::RedisQueue;
use crate::queue::retention::{self, RetentionJob};
use crate::queue::sql::SqlQueue;
use crate::queue::worker::Worker;
use crate::queue::JobQueue;
use crate::render::job::RenderJob;
use crate::render::local::LocalRenderer;
use crate::state::AppState;
use crate::storage::fs::FolderStore;
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
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Connects the database, applies migrations and assembles the shared state.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
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
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    let queue: Arc<dyn JobQueue> = match &config.redis_url {
        Some(url) => Arc::new(
            RedisQueue::connect(
                url.expose().as_str(),
                "airwave",
                clock.clone(),
                db.clone(),
                config.queues.clone(),
            )
            .await
            .context("cannot connect to Redis (REDIS_URL)")?,
        ),
        None => Arc::new(SqlQueue::new(
            db.clone(),
            clock.clone(),
            config.queues.clone(),
        )),
    };
    let mut health = HealthRegistry::new(Duration::from_secs(3));
    health.register(Arc::new(DatabaseCheck {
        db: db.clone(),
        warn_after: Duration::from_millis(250),
    }));
    health.register(Arc::new(crate::health::QueueCheck {
        queue: queue.clone(),
        warn_after: Duration::from_millis(250),
    }));
    // The features' event consumers.
    let consumers: Arc<[Arc<dyn crate::events::Consumer>]> =
        Arc::from(vec![Arc::new(crate::render::job::RenderConsumer {
            queue: queue.clone(),
        }) as Arc<dyn crate::events::Consumer>]);
    health.register(Arc::new(crate::events::health::EventLagCheck {
        db: db.clone(),
        clock: clock.clone(),
        consumers: consumers.to_vec(),
        warn_after: config.events_lag_warn,
        fail_after: config.events_lag_fail,
    }));
    let supervisor = Arc::new(crate::supervise::Supervisor::default());
    health.register(Arc::new(crate::supervise::WorkersCheck(supervisor.clone())));
    let blobs: Arc<dyn BlobStore> = Arc::new(FolderStore::new(config.data_dir.join("blobs")));
    Ok(AppState {
        db,
        clock,
        config: Arc::new(config),
        signing_key: Arc::new(signing_key),
        health: Arc::new(health),
        queue,
        blobs,
        ops_appended: Arc::new(tokio::sync::Notify::new()),
        consumers,
        supervisor,
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
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(&path) {
        Ok(mut f) => {
            use std::io::Write as _;
            f.write_all(
                base64::engine::general_purpose::STANDARD
                    .encode(&bytes)
                    .as_bytes(),
            )?;
            tracing::info!(path = %path.display(), "generated a development signing key");
            Ok(SecretSlice::from(bytes))
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_dev_secret(dir),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
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
        let state = build_state(config, Arc::new(SystemClock)).await?;
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
        let supervisor = self.state.supervisor.clone();
        // Queue metrics are written by every role (the API enqueues too), last of all at exit.
        let metrics_stop = CancellationToken::new();
        let mut flusher = tokio::task::JoinSet::new();
        {
            let (metrics, db, stop, every) = (
                self.state.queue.metrics().clone(),
                db.clone(),
                metrics_stop.clone(),
                self.state.config.queue_metrics_flush,
            );
            supervisor.spawn(
                &mut flusher,
                "queue-metrics",
                metrics_stop.clone(),
                move || metrics.clone().run_flusher(db.clone(), stop.clone(), every),
            );
        }
        // The health checker and queue stats feed the ops stream; every role runs one (the log
        // is shared, and the previous status comes from the database, so they agree).
        let checker = crate::ops::checker::Checker {
            db: db.clone(),
            clock: self.state.clock.clone(),
            health: self.state.health.clone(),
            queue: self.state.queue.clone(),
            every: self.state.config.health_check_interval,
            stats_every: self.state.config.ops_stats_interval,
            keep_events: self.state.config.ops_stream_keep,
            keep_history: self.state.config.health_history_keep,
            appended: self.state.ops_appended.clone(),
        };
        let mut checkers = tokio::task::JoinSet::new();
        {
            let stop = cancel.clone();
            supervisor.spawn(&mut checkers, "health-checker", cancel.clone(), move || {
                checker.clone().run_until_stopped(stop.clone())
            });
        }
        let workers = if self.role == Role::Api {
            None
        } else {
            Some(spawn_workers(&self.state, cancel.clone()))
        };
        if let Some(listener) = self.listener {
            let app = self
                .router
                .into_make_service_with_connect_info::<SocketAddr>();
            let stop = cancel.clone();
            let server = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await });
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
        if let Some(mut workers) = workers {
            while workers.join_next().await.is_some() {}
        }
        while checkers.join_next().await.is_some() {}
        metrics_stop.cancel();
        while flusher.join_next().await.is_some() {}
        db.close().await;
        Ok(())
    }
}

/// Starts the event dispatcher, the queue workers and the schedulers, each supervised (restarted
/// with backoff if it fails); they stop (releasing unfinished jobs) when `stop` fires.
fn spawn_workers(state: &AppState, stop: CancellationToken) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    let sup = state.supervisor.clone();
    let dispatcher = Dispatcher {
        db: state.db.clone(),
        clock: state.clock.clone(),
        consumers: state.consumers.to_vec(),
        policy: DispatchPolicy {
            max_attempts: state.config.events_max_attempts,
            ..DispatchPolicy::default()
        },
        instance: crate::queue::worker::new_worker_id("events"),
    };
    {
        let stop = stop.clone();
        sup.spawn(&mut set, "event-dispatcher", stop.clone(), move || {
            let (d, stop) = (dispatcher.clone(), stop.clone());
            async move {
                if let Err(e) = d.run_until_stopped(stop).await {
                    tracing::error!(error = %e, "the event dispatcher stopped");
                }
            }
        });
    }
    // Other processes' "work is ready" signals wake this process's idle workers.
    {
        let (queue, stop) = (state.queue.clone(), stop.clone());
        sup.spawn(&mut set, "queue-listener", stop.clone(), move || {
            let (queue, stop) = (queue.clone(), stop.clone());
            async move {
                queue.listen_for_work(stop.clone()).await;
                // Backends without cross-process signals (SQLite) return at once: nothing to do.
                stop.cancelled().await;
            }
        });
    }
    let c = &state.config;
    let renderer: Arc<dyn crate::render::RenderProvider> =
        match (c.render_provider, &c.creatomate_api_key) {
            (crate::config::RenderProviderKind::Creatomate, Some(key)) => {
                Arc::new(crate::render::creatomate::CreatomateRenderer::new(
                    c.creatomate_url.clone(),
                    key.clone(),
                    c.creatomate_poll,
                    c.creatomate_timeout,
                ))
            }
            _ => Arc::new(LocalRenderer::new(state.db.clone(), state.blobs.clone())),
        };
    let render = RenderJob {
        db: state.db.clone(),
        clock: state.clock.clone(),
        blobs: state.blobs.clone(),
        provider: renderer,
    };
    let worker = Arc::new(
        Worker::for_queue(
            state.queue.clone(),
            crate::render::job::QUEUE,
            state.config.queue_lease,
        )
        .handle(crate::render::job::KIND, Arc::new(render)),
    );
    tracing::info!(
        worker = worker.id(),
        queue = crate::render::job::QUEUE,
        backend = state.queue.backend(),
        "worker started"
    );
    {
        let stop = stop.clone();
        sup.spawn(&mut set, "render-worker", stop.clone(), move || {
            worker
                .clone()
                .run_until_stopped(stop.clone(), SHUTDOWN_GRACE)
        });
    }
    // Retention: a cleanup worker, and its job scheduled every ten minutes (unique: one at a time).
    let retention = RetentionJob {
        queue: state.queue.clone(),
        clock: state.clock.clone(),
        retention: state.config.retention,
    };
    let cleanup = Arc::new(
        Worker::for_queue(
            state.queue.clone(),
            retention::QUEUE,
            state.config.queue_lease,
        )
        .handle(retention::KIND, Arc::new(retention)),
    );
    {
        let stop = stop.clone();
        sup.spawn(&mut set, "cleanup-worker", stop.clone(), move || {
            cleanup
                .clone()
                .run_until_stopped(stop.clone(), SHUTDOWN_GRACE)
        });
    }
    let queue = state.queue.clone();
    sup.spawn(&mut set, "retention-schedule", stop.clone(), move || {
        let (queue, stop) = (queue.clone(), stop.clone());
        async move {
            while !stop.is_cancelled() {
                if let Err(e) = queue
                    .enqueue(retention::job(&queue.policy(retention::QUEUE)))
                    .await
                {
                    tracing::warn!(error = %e, "scheduling the retention job failed");
                }
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(retention::EVERY) => {}
                }
            }
        }
    });
    set
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
