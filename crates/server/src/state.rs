//! What every request handler and worker shares: the database, the clock, the configuration, the
//! signing key and the health registry. Built once in `startup.rs`; no global statics, so a test
//! process can run many applications.

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::health::HealthRegistry;
use crate::queue::JobQueue;
use crate::storage::BlobStore;
use secrecy::SecretSlice;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    /// The key sessions and approval links are signed with (`JWT_SECRET`).
    pub signing_key: Arc<SecretSlice<u8>>,
    pub health: Arc<HealthRegistry>,
    /// The job queue: SQL tables in the database, or Redis when `REDIS_URL` is set.
    pub queue: Arc<dyn JobQueue>,
    /// Blobs: a folder in the data dir, or an S3 bucket (with the backup bucket set, every write
    /// and removal through it is announced to the `storage.mirror` job).
    pub blobs: Arc<dyn BlobStore>,
    /// The backup bucket (`AWS_S3_BACKUP_BUCKET`), when configured.
    pub backup_blobs: Option<Arc<dyn BlobStore>>,
    /// Woken when this process appends to the ops log, so its streams send at once.
    pub ops_appended: Arc<tokio::sync::Notify>,
    /// The event consumers the features registered (the dispatcher delivers to them).
    pub consumers: Arc<[Arc<dyn crate::events::Consumer>]>,
    /// Runs the background loops and reports them in `/api/health` (`workers`).
    pub supervisor: Arc<crate::supervise::Supervisor>,
    /// The render provider `startup.rs` chose (local renderer or Creatomate).
    pub renderer: Arc<dyn crate::render::RenderProvider>,
    /// Every feature, as `startup::features` lists them.
    pub features: Arc<[Arc<dyn crate::feature::Feature>]>,
    /// Set once the database is reachable and migrated; until then requests other than health
    /// get `503 starting`.
    pub ready: Arc<Ready>,
    /// The open live streams: their bounds, re-checks and end at shutdown.
    pub streams: Arc<crate::ops::streams::Streams>,
}

/// Whether the database is reachable and migrated.
#[derive(Debug, Default)]
pub struct Ready(std::sync::atomic::AtomicBool);

impl Ready {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl AppState {
    /// What puts an event on the operations stream (see [`crate::ops::Publisher`]).
    pub fn ops(&self) -> crate::ops::Publisher {
        crate::ops::Publisher::new(self.db.clone(), self.ops_appended.clone())
    }
}
