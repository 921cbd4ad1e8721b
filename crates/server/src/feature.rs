//! The one interface through which a feature plugs in. A feature (a folder: `auth/`, `queue/`,
//! `render/`…) contributes its routes with their OpenAPI (only its `routes.rs` speaks HTTP), its
//! event consumers, its health checks, its supervised tasks and its configuration section; `startup.rs` chooses every backend
//! once, hands them over as [`Backends`], and assembles the features listed in
//! [`crate::startup::features`] — adding a feature is its folder plus one line there (see
//! `docs/architecture.md`, "Adding a feature").

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::events::Consumer;
use crate::health::HealthCheck;
use crate::queue::JobQueue;
use crate::render::RenderProvider;
use crate::state::AppState;
use crate::storage::BlobStore;
use futures_util::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How long running jobs may go on after a stop signal before they are given back.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// A feature's routes and their OpenAPI description.
pub type Routes = utoipa_axum::router::OpenApiRouter<AppState>;

/// The backends chosen once in `startup.rs`, for features to build their parts with.
#[derive(Clone)]
pub struct Backends {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub queue: Arc<dyn JobQueue>,
    pub blobs: Arc<dyn BlobStore>,
    /// The render provider (local renderer or Creatomate).
    pub renderer: Arc<dyn RenderProvider>,
    /// Every feature's event consumers (collected before health checks are asked for).
    pub consumers: Arc<[Arc<dyn Consumer>]>,
    /// Appends to the operations stream the console watches.
    pub ops: crate::ops::Publisher,
}

/// Which processes run a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    /// Every role (`api`, `worker`, `all`), stopped with the rest.
    EveryRole,
    /// The `worker` and `all` roles only.
    Workers,
    /// Every role, stopped after every other task has ended (it records what they did last).
    EveryRoleStoppedLast,
}

/// A long-running loop a feature contributes. It runs supervised: restarted with backoff when it
/// panics or returns before `stop`.
pub struct Task {
    pub name: String,
    pub runs: Runs,
    start: Box<dyn Fn(CancellationToken) -> BoxFuture<'static, ()> + Send + Sync>,
}

impl Task {
    pub fn new<F, Fut>(name: &str, runs: Runs, start: F) -> Self
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name: name.to_owned(),
            runs,
            start: Box::new(move |stop| Box::pin(start(stop))),
        }
    }

    /// A fresh run of the loop, until `stop`.
    pub fn start(&self, stop: CancellationToken) -> BoxFuture<'static, ()> {
        (self.start)(stop)
    }
}

/// What a feature contributes. Every part is optional.
pub trait Feature: Send + Sync {
    fn name(&self) -> &'static str;

    /// Its routes, each with its OpenAPI description (`utoipa_axum::routes!`).
    fn routes(&self) -> Routes {
        Routes::new()
    }

    /// Its event consumers, with the event types each takes.
    fn consumers(&self, backends: &Backends) -> Vec<Arc<dyn Consumer>> {
        let _ = backends;
        Vec::new()
    }

    /// Its components of `/api/health`.
    fn health_checks(&self, backends: &Backends) -> Vec<Arc<dyn HealthCheck>> {
        let _ = backends;
        Vec::new()
    }

    /// Its workers and schedules.
    fn tasks(&self, state: &AppState) -> Vec<Task> {
        let _ = state;
        Vec::new()
    }

    /// Its job handlers on the shared `cleanup` queue (the queue feature's cleanup worker runs
    /// them beside retention): `(kind, handler)`.
    fn cleanup_jobs(
        &self,
        state: &AppState,
    ) -> Vec<(&'static str, Arc<dyn crate::queue::worker::JobHandler>)> {
        let _ = state;
        Vec::new()
    }

    /// Its configuration section: the declared settings `config check` and
    /// `docs/configuration.md` show.
    fn settings(&self) -> Option<crate::config::settings::Section> {
        None
    }
}

/// A feature that contributes only routes (accounts, clients, assets, campaigns, approvals).
pub struct RoutesOnly {
    pub name: &'static str,
    pub routes: fn() -> Routes,
}

impl Feature for RoutesOnly {
    fn name(&self) -> &'static str {
        self.name
    }

    fn routes(&self) -> Routes {
        (self.routes)()
    }
}
