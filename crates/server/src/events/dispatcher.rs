//! The dispatcher: hands every committed event to every consumer registered for its type.
//!
//! Each consumer has its own position in the outbox (`event_consumers`), its own task and its own
//! lease, so:
//! - every committed event of a consumer's types reaches it at least once, with the idempotency
//!   key `{consumer}:{event id}` (the same on every retry and redelivery);
//! - a slow or failing consumer holds back only itself;
//! - several instances may run dispatchers: the lease lets exactly one deliver a consumer's events
//!   at a time, and a position is only moved by the lease holder (fenced by `owner`), so a
//!   subject's events arrive in order;
//! - a failed event is taken out of line at once (`event_pending`) and retried with backoff; the
//!   later events of the same subject wait behind it (held), other subjects go on. Out of
//!   attempts (or on a permanent error) it is *parked* with its error: visible in the operator API,
//!   retried only when an operator says so, never forever.
//!
//! The position moves after each event (with any pending row, in one transaction), so a dispatcher
//! killed mid-batch redelivers at most the event it was on.

use super::outbox::{self, Event, Position};
use crate::clock::Clock;
use crate::db::{BeginWrite as _, Db};
use crate::queue::Backoff;
use crate::with_db;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One delivery of an event to a consumer.
#[derive(Debug)]
pub struct Delivery<'a> {
    /// `{consumer}:{event id}`: stable across retries, redeliveries and instances.
    pub key: String,
    pub event: &'a Event,
    /// 1 for the first try.
    pub attempt: u32,
}

/// Why a consumer could not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub message: String,
    /// Retrying cannot help (a malformed event): park it at once.
    pub permanent: bool,
}

impl DeliveryError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

/// Something that takes events: a feature registers one with the event types it wants.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Stable name: its position, pending events and idempotency keys are kept under it.
    fn name(&self) -> &str;
    /// The event types it takes.
    fn event_types(&self) -> &[&'static str];
    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<(), DeliveryError>;
}

/// How the dispatcher paces itself.
#[derive(Debug, Clone)]
pub struct DispatchPolicy {
    /// Events read per query.
    pub batch: i64,
    /// How long an instance holds a consumer without renewing.
    pub lease: Duration,
    /// How often an idle consumer looks for new events.
    pub poll: Duration,
    /// Tries before an event is parked.
    pub max_attempts: u32,
    /// Wait between tries (full jitter).
    pub backoff: Backoff,
}

impl Default for DispatchPolicy {
    fn default() -> Self {
        Self {
            batch: 100,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(100),
            max_attempts: 8,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("a consumer's dispatch loop crashed: {0}")]
    Crashed(String),
}

/// Makes sure every consumer has a row; a new one starts at the outbox's horizon (it takes
/// events committed from then on). Every process does this at start-up, before it serves a
/// request (`startup`), so no event a request commits can fall before a consumer's start — a
/// worker's dispatcher that starts later still finds every such event after its consumers'.
pub async fn register_consumers(
    db: &Db,
    clock: &dyn Clock,
    consumers: &[Arc<dyn Consumer>],
) -> Result<(), DispatchError> {
    for c in consumers {
        let start = outbox::horizon(db).await?;
        let now = clock.now();
        with_db!(db, pool => {
            sqlx::query("INSERT INTO event_consumers (name, cursor_tx, cursor_seq, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING")
                .bind(c.name())
                .bind(start.tx)
                .bind(start.seq)
                .bind(now)
                .execute(pool)
                .await?;
        });
    }
    Ok(())
}

/// The dispatcher of one process: the registered consumers and what they need.
#[derive(Clone)]
pub struct Dispatcher {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub consumers: Vec<Arc<dyn Consumer>>,
    pub policy: DispatchPolicy,
    /// This instance's name in leases.
    pub instance: String,
}

/// What one pass over a consumer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Events handed to the consumer (new and retried), whatever the outcome.
    pub tried: usize,
    /// Events that failed (now retrying or parked).
    pub failed: usize,
    /// New events read from the outbox (a full batch means: go on at once).
    pub read: usize,
    /// Another instance holds the consumer.
    pub not_ours: bool,
}

/// A pending row to write: attempts, next try, error, parked at.
type NewPending = (u32, DateTime<Utc>, String, Option<DateTime<Utc>>);

#[derive(sqlx::FromRow)]
struct PendingRow {
    event_id: String,
    attempts: i32,
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    /// Makes sure every consumer has a row (see [`register_consumers`]).
    pub async fn register(&self) -> Result<(), DispatchError> {
        register_consumers(&self.db, self.clock.as_ref(), &self.consumers).await
    }

    /// Takes (or renews) this instance's lease on `consumer`; its position when held.
    async fn claim(&self, consumer: &str) -> Result<Option<Position>, DispatchError> {
        let now = self.clock.now();
        let until = now + to_chrono(self.policy.lease);
        let row: Option<(i64, i64)> = with_db!(&self.db, pool => {
            sqlx::query_as("UPDATE event_consumers SET owner = $2, lease_until = $3 WHERE name = $1 AND (owner IS NULL OR owner = $2 OR lease_until < $4) RETURNING cursor_tx, cursor_seq")
                .bind(consumer)
                .bind(&self.instance)
                .bind(until)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(tx, seq)| Position { tx, seq }))
    }

    /// Gives up this instance's leases (at shutdown), so another instance goes on at once.
    pub async fn release(&self) -> Result<(), DispatchError> {
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE event_consumers SET owner = NULL, lease_until = NULL WHERE owner = $1")
                .bind(&self.instance)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    async fn try_deliver(
        &self,
        consumer: &dyn Consumer,
        event: &Event,
        attempt: u32,
    ) -> Result<(), DeliveryError> {
        let delivery = Delivery {
            key: format!("{}:{}", consumer.name(), event.id),
            event,
            attempt,
        };
        // A panicking consumer is a failed delivery, not a dead dispatcher; one that hangs is
        // cut off at half the lease, so the lease never runs out while this instance delivers.
        let limit = self.policy.lease / 2;
        let run = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            consumer.deliver(&delivery),
        ));
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => Err(DeliveryError::retryable(format!(
                "the consumer panicked: {}",
                crate::panic_message(&*panic)
            ))),
            Err(_) => Err(DeliveryError::retryable(format!(
                "the consumer did not answer within {} s",
                limit.as_secs()
            ))),
        }
    }

    /// When a failed try `attempt` is tried again, or `None` to park it.
    fn next_try(&self, attempt: u32, error: &DeliveryError) -> Option<DateTime<Utc>> {
        if error.permanent || attempt >= self.policy.max_attempts {
            return None;
        }
        let wait = self.policy.backoff.delay(attempt, rand::random::<f64>());
        Some(self.clock.now() + to_chrono(wait))
    }

    /// One pass over `consumer`: retries its due pending events (the first of each subject, at
    /// most a batch), then reads up to a batch of new events and delivers those of its types.
    /// Every write renews the lease and is fenced by it; each delivery is bounded by half the
    /// lease, so an instance that holds a consumer never outlives its lease while delivering.
    pub async fn run_consumer_once(&self, consumer: &dyn Consumer) -> Result<Pass, DispatchError> {
        let mut pass = Pass::default();
        let Some(position) = self.claim(consumer.name()).await? else {
            pass.not_ours = true;
            return Ok(pass);
        };
        let name = consumer.name();

        // Every subject with a pending event: its later events wait behind it.
        let mut blocked: HashSet<String> = with_db!(&self.db, pool => {
            sqlx::query_scalar::<_, String>("SELECT DISTINCT subject_id FROM event_pending WHERE consumer = $1")
                .bind(name)
                .fetch_all(pool)
                .await?
        })
        .into_iter()
        .collect();
        // The due heads: the first pending event of each subject, not parked, whose time came.
        let now = self.clock.now();
        let heads: Vec<PendingRow> = with_db!(&self.db, pool => {
            sqlx::query_as("SELECT p.event_id, p.attempts FROM event_pending p
                 WHERE p.consumer = $1 AND p.parked_at IS NULL AND p.next_at <= $2
                   AND NOT EXISTS (SELECT 1 FROM event_pending q WHERE q.consumer = p.consumer AND q.subject_id = p.subject_id
                                     AND (q.event_tx, q.event_seq) < (p.event_tx, p.event_seq))
                 ORDER BY p.event_tx, p.event_seq LIMIT $3")
                .bind(name)
                .bind(now)
                .bind(self.policy.batch)
                .fetch_all(pool)
                .await?
        });
        for row in heads {
            let Some(event) = outbox::get(&self.db, &row.event_id).await? else {
                continue;
            };
            let attempt = u32::try_from(row.attempts).unwrap_or(0) + 1;
            pass.tried += 1;
            let outcome = self.try_deliver(consumer, &event, attempt).await;
            let now = self.clock.now();
            let until = now + to_chrono(self.policy.lease);
            let held = match &outcome {
                Ok(()) => with_db!(&self.db, pool => {
                    let mut tx = pool.begin_write().await?;
                    let held: Option<i32> = sqlx::query_scalar("UPDATE event_consumers SET delivered = delivered + 1, lease_until = $3, updated_at = $4 WHERE name = $1 AND owner = $2 RETURNING 1")
                        .bind(name).bind(&self.instance).bind(until).bind(now).fetch_optional(&mut *tx).await?;
                    if held.is_some() {
                        sqlx::query("DELETE FROM event_pending WHERE consumer = $1 AND event_id = $2")
                            .bind(name).bind(&event.id).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    held.is_some()
                }),
                Err(e) => {
                    pass.failed += 1;
                    let next = self.next_try(attempt, e);
                    if next.is_none() {
                        tracing::warn!(consumer = name, event = %event.id, error = %e, "event parked");
                    }
                    with_db!(&self.db, pool => {
                        let mut tx = pool.begin_write().await?;
                        let held: Option<i32> = sqlx::query_scalar("UPDATE event_consumers SET lease_until = $3, updated_at = $4 WHERE name = $1 AND owner = $2 RETURNING 1")
                            .bind(name).bind(&self.instance).bind(until).bind(now).fetch_optional(&mut *tx).await?;
                        if held.is_some() {
                            sqlx::query("UPDATE event_pending SET attempts = $3, next_at = $4, last_error = $5, parked_at = $6 WHERE consumer = $1 AND event_id = $2")
                                .bind(name).bind(&event.id)
                                .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
                                .bind(next.unwrap_or(now))
                                .bind(&e.message)
                                .bind(next.is_none().then_some(now))
                                .execute(&mut *tx).await?;
                        }
                        tx.commit().await?;
                        held.is_some()
                    })
                }
            };
            if !held {
                pass.not_ours = true;
                return Ok(pass);
            }
        }

        // New events: read in order whatever their type (so the position moves past events this
        // consumer does not take, and a consumer of rare types does not rescan them), deliver
        // those of its types. Subjects with pending events keep their order: later ones wait.
        let events = outbox::read_after(&self.db, position, self.policy.batch).await?;
        pass.read = events.len();
        let types = consumer.event_types();
        for (i, event) in events.iter().enumerate() {
            let last = i + 1 == events.len();
            if !types.contains(&event.event_type.as_str()) {
                // Nothing to deliver; the position is written with the next delivery or at the end.
                if !last {
                    continue;
                }
                if !self.advance(name, event.position, None, 0).await? {
                    pass.not_ours = true;
                }
                return Ok(pass);
            }
            let waiting = blocked.contains(&event.subject);
            let (outcome, attempt) = if waiting {
                (None, 0)
            } else {
                pass.tried += 1;
                (Some(self.try_deliver(consumer, event, 1).await), 1)
            };
            let now = self.clock.now();
            let pending: Option<NewPending> = match &outcome {
                None => Some((
                    0,
                    now,
                    "waiting behind an earlier event of the same subject".into(),
                    None,
                )),
                Some(Ok(())) => None,
                Some(Err(e)) => {
                    pass.failed += 1;
                    let next = self.next_try(attempt, e);
                    if next.is_none() {
                        tracing::warn!(consumer = name, event = %event.id, error = %e, "event parked");
                    }
                    Some((
                        attempt,
                        next.unwrap_or(now),
                        e.message.clone(),
                        next.is_none().then_some(now),
                    ))
                }
            };
            if pending.is_some() {
                blocked.insert(event.subject.clone());
            }
            let delivered = i64::from(matches!(outcome, Some(Ok(()))));
            let pending = pending.map(|p| (event, p));
            if !self
                .advance(name, event.position, pending, delivered)
                .await?
            {
                pass.not_ours = true;
                return Ok(pass);
            }
        }
        Ok(pass)
    }

    /// Moves `consumer`'s position to `to` (with a pending row to write, and how many events were
    /// delivered), renewing the lease, in one transaction fenced by the lease. `false` when
    /// another instance holds the consumer now.
    async fn advance(
        &self,
        name: &str,
        to: Position,
        pending: Option<(&Event, NewPending)>,
        delivered: i64,
    ) -> Result<bool, DispatchError> {
        let now = self.clock.now();
        let until = now + to_chrono(self.policy.lease);
        Ok(with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            let held: Option<i32> = sqlx::query_scalar("UPDATE event_consumers SET cursor_tx = $3, cursor_seq = $4, delivered = delivered + $5, lease_until = $6, updated_at = $7 WHERE name = $1 AND owner = $2 RETURNING 1")
                .bind(name).bind(&self.instance)
                .bind(to.tx).bind(to.seq)
                .bind(delivered).bind(until).bind(now)
                .fetch_optional(&mut *tx).await?;
            if let (Some(_), Some((event, (attempts, next_at, error, parked_at)))) = (held, &pending) {
                sqlx::query("INSERT INTO event_pending (consumer, event_id, event_tx, event_seq, subject_id, attempts, next_at, last_error, parked_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (consumer, event_id) DO NOTHING")
                    .bind(name).bind(&event.id)
                    .bind(event.position.tx).bind(event.position.seq)
                    .bind(&event.subject)
                    .bind(i32::try_from(*attempts).unwrap_or(i32::MAX))
                    .bind(*next_at).bind(error).bind(*parked_at).bind(now)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            held.is_some()
        }))
    }

    /// Delivers to one consumer until `stop`: at once while there is more, every `poll` when
    /// idle, with backoff on database errors.
    async fn run_consumer(&self, consumer: Arc<dyn Consumer>, stop: CancellationToken) {
        let mut wait = self.policy.poll;
        while !stop.is_cancelled() {
            match self.run_consumer_once(consumer.as_ref()).await {
                Ok(p) if p.read as i64 == self.policy.batch && !p.not_ours => continue,
                Ok(_) => wait = self.policy.poll,
                Err(e) => {
                    tracing::warn!(consumer = consumer.name(), error = %e, "dispatching events failed; retrying");
                    wait = (wait * 2).clamp(self.policy.poll, Duration::from_secs(10));
                }
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Registers the consumers and delivers to each (one task per consumer) until `stop`; then
    /// gives up this instance's leases.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), DispatchError> {
        self.register().await?;
        let mut tasks = tokio::task::JoinSet::new();
        for c in self.consumers.clone() {
            let me = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move { me.run_consumer(c, stop).await });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                // One consumer's loop died: stop them all and let the supervisor restart the
                // dispatcher (with backoff, shown in /api/health) rather than leave it stalled.
                tasks.shutdown().await;
                let _ = self.release().await;
                return Err(DispatchError::Crashed(e.to_string()));
            }
        }
        self.release().await
    }
}

/// A consumer's backlog and health, for the operator API and the health check.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerLag {
    pub name: String,
    pub event_types: Vec<String>,
    /// Events not delivered yet: new ones after its position plus pending ones.
    pub undelivered: i64,
    /// When the oldest undelivered event was written.
    pub oldest_undelivered_at: Option<DateTime<Utc>>,
    /// Failed events being retried and the later events of their subjects held behind them.
    pub pending: i64,
    pub parked: i64,
    pub delivered: i64,
    pub owner: Option<String>,
}

impl ConsumerLag {
    /// Seconds since the oldest undelivered event was written (0 when nothing is owed).
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> f64 {
        self.oldest_undelivered_at
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0)
    }
}

#[derive(sqlx::FromRow)]
struct ConsumerRow {
    cursor_tx: i64,
    cursor_seq: i64,
    owner: Option<String>,
    lease_until: Option<DateTime<Utc>>,
    delivered: i64,
}

#[derive(sqlx::FromRow)]
struct PendingStats {
    pending: i64,
    parked: i64,
}

/// The lag of each consumer.
pub async fn lag(
    db: &Db,
    clock: &dyn Clock,
    consumers: &[Arc<dyn Consumer>],
) -> Result<Vec<ConsumerLag>, sqlx::Error> {
    let mut out = Vec::with_capacity(consumers.len());
    let now = clock.now();
    for c in consumers {
        let row: Option<ConsumerRow> = with_db!(db, pool => {
            sqlx::query_as("SELECT cursor_tx, cursor_seq, owner, lease_until, delivered FROM event_consumers WHERE name = $1")
                .bind(c.name()).fetch_optional(pool).await?
        });
        let Some(row) = row else {
            // Not registered yet (no dispatcher has run): nothing is owed to it.
            out.push(ConsumerLag {
                name: c.name().to_owned(),
                event_types: c.event_types().iter().map(|t| (*t).to_owned()).collect(),
                undelivered: 0,
                oldest_undelivered_at: None,
                pending: 0,
                parked: 0,
                delivered: 0,
                owner: None,
            });
            continue;
        };
        let position = Position {
            tx: row.cursor_tx,
            seq: row.cursor_seq,
        };
        let (new, oldest_new) = outbox::count_after(db, position, c.event_types()).await?;
        let stats: PendingStats = with_db!(db, pool => {
            sqlx::query_as("SELECT COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 1 ELSE 0 END), 0) AS pending, COALESCE(SUM(CASE WHEN parked_at IS NULL THEN 0 ELSE 1 END), 0) AS parked FROM event_pending WHERE consumer = $1")
                .bind(c.name()).fetch_one(pool).await?
        });
        let oldest_pending: Option<DateTime<Utc>> = with_db!(db, pool => {
            sqlx::query_scalar("SELECT e.created_at FROM event_pending p JOIN events e ON e.id = p.event_id WHERE p.consumer = $1 ORDER BY p.event_tx, p.event_seq LIMIT 1")
                .bind(c.name()).fetch_optional(pool).await?
        });
        let oldest = match (oldest_new, oldest_pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        out.push(ConsumerLag {
            name: c.name().to_owned(),
            event_types: c.event_types().iter().map(|t| (*t).to_owned()).collect(),
            undelivered: new + stats.pending + stats.parked,
            oldest_undelivered_at: oldest,
            pending: stats.pending,
            parked: stats.parked,
            delivered: row.delivered,
            owner: row
                .owner
                .filter(|_| row.lease_until.is_some_and(|u| u >= now)),
        });
    }
    Ok(out)
}

/// An event a consumer has not taken yet, with why.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PendingEvent {
    pub event_id: String,
    pub event_type: String,
    pub subject_id: String,
    pub attempts: i32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A consumer's pending events (retrying, held and parked), oldest first.
pub async fn pending(
    db: &Db,
    consumer: &str,
    only_parked: bool,
    limit: i64,
) -> Result<Vec<PendingEvent>, sqlx::Error> {
    Ok(with_db!(db, pool => {
        sqlx::query_as("SELECT p.event_id, e.type AS event_type, p.subject_id, p.attempts, p.next_at, p.last_error, p.parked_at, e.created_at FROM event_pending p JOIN events e ON e.id = p.event_id WHERE p.consumer = $1 AND ($2 = 0 OR p.parked_at IS NOT NULL) ORDER BY p.event_tx, p.event_seq LIMIT $3")
            .bind(consumer)
            .bind(i32::from(only_parked))
            .bind(limit)
            .fetch_all(pool)
            .await?
    }))
}

/// Makes parked events of `consumer` (one, or all) due again with fresh attempts, in the same
/// transaction as the audit entry. Returns how many.
pub async fn retry_parked(
    db: &Db,
    clock: &dyn Clock,
    actor: &crate::audit::Actor,
    consumer: &str,
    event_id: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let now = clock.now();
    with_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query("UPDATE event_pending SET parked_at = NULL, attempts = 0, next_at = $3 WHERE consumer = $1 AND parked_at IS NOT NULL AND ($2 IS NULL OR event_id = $2)")
            .bind(consumer)
            .bind(event_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            crate::record_on!(&mut *tx, now, actor, crate::audit::Entry {
                action: "events.retry_parked",
                target_type: Some("event_consumer"),
                target_id: Some(consumer),
                detail: serde_json::json!({"event_id": event_id, "count": n}),
            })?;
        }
        tx.commit().await?;
        Ok(n)
    })
}
