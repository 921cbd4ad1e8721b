//! Per-queue metrics: jobs enqueued, completed, failed and dead per minute, and wait and run time
//! histograms, kept 48 hours so the console can chart a day.
//!
//! Every process counts in memory (`Metrics`, one per queue backend) and a flusher writes each
//! touched minute's whole values to `queue_metrics` every few seconds, one row per (queue, minute,
//! process). Rewriting a row is idempotent, so a crash loses at most the last interval, and readers
//! add up the rows of every process. Times are bucketed over fixed bounds (`BOUNDS_MS`); a
//! percentile is the upper bound of the bucket it falls in, which is what a chart needs.

use crate::clock::Clock;
use crate::db::Db;
use crate::with_db;
use chrono::{DateTime, Duration as ChronoDuration, DurationRound as _, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upper bounds of the histogram buckets, in milliseconds; one more bucket takes the rest.
pub const BOUNDS_MS: [u64; 18] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
    900_000, 3_600_000,
];
const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// How long rows are kept.
pub const KEEP: ChronoDuration = ChronoDuration::hours(48);

/// Counts of durations over `BOUNDS_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Histogram(pub [u64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Self([0; BUCKETS])
    }
}

impl Histogram {
    pub fn record(&mut self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let i = BOUNDS_MS.partition_point(|b| *b < ms);
        self.0[i] += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The upper bound (ms) of the bucket holding the `p`-th percentile (`p` in 0–100); the
    /// overflow bucket reports the largest bound. `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(BOUNDS_MS[i.min(BOUNDS_MS.len() - 1)]);
            }
        }
        BOUNDS_MS.last().copied()
    }

    fn to_json(self) -> String {
        serde_json::to_string(&self.0.to_vec()).unwrap_or_else(|_| "[]".into())
    }

    /// Reads a stored histogram; a row written with fewer buckets fills the first ones.
    fn from_json(s: &str) -> Self {
        let mut h = Self::default();
        if let Ok(v) = serde_json::from_str::<Vec<u64>>(s) {
            for (slot, n) in h.0.iter_mut().zip(v) {
                *slot = n;
            }
        }
        h
    }
}

/// One queue's numbers for one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteStats {
    pub enqueued: u64,
    pub completed: u64,
    /// Failed attempts (retried or not).
    pub failed: u64,
    /// Jobs that went to the dead-letter queue.
    pub dead: u64,
    /// From due (`run_at`) to started.
    pub wait: Histogram,
    /// From started to finished.
    pub run: Histogram,
}

impl MinuteStats {
    pub fn merge(&mut self, o: &MinuteStats) {
        self.enqueued += o.enqueued;
        self.completed += o.completed;
        self.failed += o.failed;
        self.dead += o.dead;
        self.wait.merge(&o.wait);
        self.run.merge(&o.run);
    }
}

/// How a job's attempt ended, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Completed,
    /// Failed; will retry.
    Failed,
    /// Failed for the last time.
    Dead,
}

struct Slot {
    stats: MinuteStats,
    dirty: bool,
}

/// This process's counts, by queue and minute, until flushed.
pub struct Metrics {
    clock: Arc<dyn Clock>,
    source: String,
    slots: Mutex<HashMap<(String, DateTime<Utc>), Slot>>,
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(ChronoDuration::minutes(1)).unwrap_or(t)
}

impl Metrics {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            source: crate::queue::worker::new_worker_id("metrics"),
            slots: Mutex::default(),
        }
    }

    fn with_slot(&self, queue: &str, f: impl FnOnce(&mut MinuteStats)) {
        let minute = minute_of(self.clock.now());
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots
            .entry((queue.to_owned(), minute))
            .or_insert_with(|| Slot {
                stats: MinuteStats::default(),
                dirty: true,
            });
        f(&mut slot.stats);
        slot.dirty = true;
    }

    pub fn enqueued(&self, queue: &str, n: u64) {
        if n > 0 {
            self.with_slot(queue, |s| s.enqueued += n);
        }
    }

    /// A job's attempt ended: `wait` from due to started, `run` from started to now.
    pub fn finished(&self, queue: &str, how: Finished, wait: Duration, run: Duration) {
        self.with_slot(queue, |s| {
            match how {
                Finished::Completed => s.completed += 1,
                Finished::Failed => s.failed += 1,
                Finished::Dead => {
                    s.failed += 1;
                    s.dead += 1;
                }
            }
            s.wait.record(wait);
            s.run.record(run);
        });
    }

    /// Writes every minute touched since the last flush; forgets minutes that are over and
    /// written. On an error the rows stay dirty and the next flush tries again.
    pub async fn flush(&self, db: &Db) -> Result<usize, sqlx::Error> {
        let current = minute_of(self.clock.now());
        let dirty: Vec<((String, DateTime<Utc>), MinuteStats)> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .iter()
                .filter(|(_, s)| s.dirty)
                .map(|(k, s)| (k.clone(), s.stats.clone()))
                .collect()
        };
        for ((queue, minute), stats) in &dirty {
            let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            with_db!(db, pool => {
                sqlx::query(
                    "INSERT INTO queue_metrics (queue, minute, source, enqueued, completed, failed, dead, wait_hist, run_hist)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (queue, minute, source) DO UPDATE SET enqueued = excluded.enqueued, completed = excluded.completed,
                       failed = excluded.failed, dead = excluded.dead, wait_hist = excluded.wait_hist, run_hist = excluded.run_hist",
                )
                .bind(queue)
                .bind(*minute)
                .bind(&self.source)
                .bind(n(stats.enqueued))
                .bind(n(stats.completed))
                .bind(n(stats.failed))
                .bind(n(stats.dead))
                .bind(stats.wait.to_json())
                .bind(stats.run.to_json())
                .execute(pool)
                .await?;
            });
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            let key = (queue.clone(), *minute);
            // Clean only if nothing was recorded while the row was being written.
            if slots.get(&key).is_some_and(|s| s.stats == *stats) {
                if *minute < current {
                    slots.remove(&key);
                } else if let Some(s) = slots.get_mut(&key) {
                    s.dirty = false;
                }
            }
        }
        Ok(dirty.len())
    }

    /// Flushes every `every` until `stop` (and once more after), pruning rows older than
    /// `KEEP` every ten minutes.
    pub async fn run_flusher(self: Arc<Self>, db: Db, stop: CancellationToken, every: Duration) {
        let mut last_prune: Option<tokio::time::Instant> = None;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                () = tokio::time::sleep(every) => false,
            };
            if let Err(e) = self.flush(&db).await {
                tracing::warn!(error = %e, "writing queue metrics failed; will retry");
            }
            if last_prune.is_none_or(|t| t.elapsed() >= Duration::from_secs(600)) {
                last_prune = Some(tokio::time::Instant::now());
                if let Err(e) = prune(&db, self.clock.now() - KEEP).await {
                    tracing::warn!(error = %e, "pruning queue metrics failed");
                }
            }
            if stopping {
                break;
            }
        }
    }
}

/// Deletes metric rows of minutes before `before`.
pub async fn prune(db: &Db, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(with_db!(db, pool => {
        sqlx::query("DELETE FROM queue_metrics WHERE minute < $1").bind(before).execute(pool).await?.rows_affected()
    }))
}

#[derive(sqlx::FromRow)]
struct Row {
    minute: DateTime<Utc>,
    enqueued: i64,
    completed: i64,
    failed: i64,
    dead: i64,
    wait_hist: String,
    run_hist: String,
}

/// A queue's minutes in `[since, until)`, every process added up, oldest first. Minutes with no
/// activity are absent.
pub async fn read(
    db: &Db,
    queue: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, MinuteStats)>, sqlx::Error> {
    let rows: Vec<Row> = with_db!(db, pool => {
        sqlx::query_as(
            "SELECT minute, enqueued, completed, failed, dead, wait_hist, run_hist FROM queue_metrics
             WHERE queue = $1 AND minute >= $2 AND minute < $3 ORDER BY minute",
        )
        .bind(queue)
        .bind(minute_of(since))
        .bind(until)
        .fetch_all(pool)
        .await?
    });
    let mut by_minute: BTreeMap<DateTime<Utc>, MinuteStats> = BTreeMap::new();
    for r in rows {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        by_minute.entry(r.minute).or_default().merge(&MinuteStats {
            enqueued: u(r.enqueued),
            completed: u(r.completed),
            failed: u(r.failed),
            dead: u(r.dead),
            wait: Histogram::from_json(&r.wait_hist),
            run: Histogram::from_json(&r.run_hist),
        });
    }
    Ok(by_minute.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_report_the_bucket_bound() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for ms in [0, 1, 3, 3, 3, 7, 40, 90, 900, 5_000_000] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 10);
        assert_eq!(h.percentile(10.0), Some(1)); // 0 ms and 1 ms land in the first bucket
        assert_eq!(h.percentile(50.0), Some(5));
        assert_eq!(h.percentile(90.0), Some(1_000));
        assert_eq!(
            h.percentile(100.0),
            Some(3_600_000),
            "overflow reports the top bound"
        );
        let stored = Histogram::from_json(&h.to_json());
        assert_eq!(stored, h);
        assert_eq!(Histogram::from_json("not json"), Histogram::default());
    }

    #[test]
    fn stats_merge_adds_everything() {
        let mut a = MinuteStats {
            enqueued: 2,
            completed: 1,
            ..Default::default()
        };
        a.run.record(Duration::from_millis(3));
        let mut b = a.clone();
        b.dead = 1;
        a.merge(&b);
        assert_eq!(
            (a.enqueued, a.completed, a.dead, a.run.count()),
            (4, 2, 1, 2)
        );
    }
}
