//! Delivery, on the `webhook` queue. A message's first attempt goes out in a
//! `webhook.deliver_batch` job with up to [`BATCH`] others (an event's, to as many endpoints:
//! sent at once, the successes recorded in one transaction); every later attempt is a
//! `webhook.deliver` job of its own:
//!
//! - the request is `POST` of the message's exact body with `webhook-id` (the message's id, the
//!   same on every attempt), `webhook-timestamp` (this attempt's unix seconds) and
//!   `webhook-signature` (one `v1,…` per secret in force), through the SSRF guard's client (no
//!   proxy, no redirect followed, the guard checking every address the name resolves to), within
//!   `AIRWAVE_WEBHOOK_TIMEOUT_SECS`;
//! - a 2xx delivers it; `410 Gone` disables the endpoint at once; a 3xx (redirects are not
//!   followed), another status or a network error fails the attempt, and the next one is
//!   scheduled by `AIRWAVE_WEBHOOK_RETRY_SCHEDULE` (a longer `Retry-After` of a 429 or 503 is
//!   honoured) as a new job with its own unique key — until the round's attempts are spent;
//! - after `AIRWAVE_WEBHOOK_CIRCUIT_FAILURES` consecutive failures the endpoint's circuit opens:
//!   its messages are held (no attempt spent) and one `webhook.probe` job tries the oldest of
//!   them after the cool-down (doubled per failed probe, up to an hour). A probe that succeeds
//!   closes the circuit and releases every held message with a fresh round of attempts;
//! - an endpoint failing without a success for `AIRWAVE_WEBHOOK_DISABLE_AFTER_HOURS` is
//!   disabled; its waiting messages fail (recoverable later).
//!
//! Every attempt is recorded (`webhook_attempts`): time, status, latency, the request's headers
//! (custom headers' values redacted), the response's headers and first 4 KiB, the error class.
//! Times come from the application's clock, so tests move time instead of sleeping.

use super::endpoints::{self, EndpointRow};
use super::settings::WebhookConfig;
use crate::clock::Clock;
use crate::db::{BeginWrite as _, Db};
use crate::ids::{WebhookAttemptId, WebhookMessageId};
use crate::ops::Publisher;
use crate::outbound::Refused;
use crate::queue::worker::{JobContext, JobHandler};
use crate::queue::{Job, JobFailure, JobQueue, NewJob, QueueError};
use crate::with_db;
use airwave_api::{WebhookAttemptOut, WebhookErrorClass};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use secrecy::SecretSlice;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Disables an endpoint in a transaction (`&mut *tx`), with the `webhook.endpoint_disabled`
/// event; its waiting messages fail (a recovery can send them later). `true` when it was not
/// disabled before (an endpoint already disabled is left as it is).
macro_rules! disable {
    ($tx:expr, $ep:expr, $now:expr, $reason:expr) => {{
        let (ep, now, reason): (&EndpointRow, DateTime<Utc>, &str) = ($ep, $now, $reason);
        let id = ep.id.as_str();
        let n = sqlx::query("UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3, updated_at = $2 WHERE id = $1 AND disabled_at IS NULL")
            .bind(id).bind(now).bind(reason)
            .execute(&mut *$tx).await.map_err(db_failure)?.rows_affected();
        if n > 0 {
            sqlx::query("UPDATE webhook_messages SET status = 'failed', last_error = $3, updated_at = $2 WHERE endpoint_id = $1 AND status IN ('pending', 'held')")
                .bind(id).bind(now).bind(format!("the endpoint was disabled: {reason}"))
                .execute(&mut *$tx).await.map_err(db_failure)?;
            // The client's members are told (by the e-mail feature, from the outbox).
            crate::emit_event!(&mut *$tx, now, crate::events::types::WEBHOOK_ENDPOINT_DISABLED, id, json!({
                "endpoint_id": id, "client_id": ep.client_id, "url": ep.url, "reason": reason,
            })).map_err(db_failure)?;
        }
        n > 0
    }};
}

pub const QUEUE: &str = "webhook";
pub const KIND_DELIVER: &str = "webhook.deliver";
pub const KIND_PROBE: &str = "webhook.probe";
pub const KIND_BATCH: &str = "webhook.deliver_batch";

/// The most first attempts one `webhook.deliver_batch` job makes (an event's messages to that
/// many endpoints, sent at once).
pub const BATCH: usize = 50;
/// How long a batch waits for its slowest requests before recording the others' outcomes (the
/// rest are recorded one by one as they end).
const BATCH_FLUSH: Duration = Duration::from_millis(500);

/// The most of a response's body recorded.
const BODY_KEPT: usize = 4096;
/// The longest `Retry-After` honoured, and the longest cool-down of a circuit.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * 3600);
const COOLDOWN_CAP: Duration = Duration::from_secs(3600);

/// One job to enqueue.
struct PendingJob {
    key: String,
    kind: &'static str,
    payload: Value,
    at: Option<DateTime<Utc>>,
    correlation: String,
}

/// Jobs to enqueue once the transaction that decided them has committed.
#[derive(Default)]
pub struct DeliverJobs(Vec<PendingJob>);

impl DeliverJobs {
    /// Attempt `attempt` of message `msg` in round `round` (unique per attempt).
    pub fn deliver(&mut self, msg: &str, round: i32, attempt: i32, at: Option<DateTime<Utc>>) {
        self.0.push(PendingJob {
            key: format!("{msg}:{round}:{attempt}"),
            kind: KIND_DELIVER,
            payload: json!({"message_id": msg, "round": round, "attempt": attempt}),
            at,
            correlation: msg.to_owned(),
        });
    }

    /// The probe of `endpoint`'s open circuit, at `at` (one per time).
    pub fn probe(&mut self, endpoint: &str, at: Option<DateTime<Utc>>) {
        let millis = at.map_or(0, |t| t.timestamp_millis());
        self.0.push(PendingJob {
            key: format!("probe:{endpoint}:{millis}"),
            kind: KIND_PROBE,
            payload: json!({"endpoint_id": endpoint}),
            at,
            correlation: endpoint.to_owned(),
        });
    }

    /// Attempt `attempt` of `msg` again at `at`, under a key of its own (a rate-limited attempt
    /// put off: the running job holds the attempt's key).
    fn put_off(&mut self, msg: &str, round: i32, attempt: i32, at: DateTime<Utc>) {
        self.0.push(PendingJob {
            key: format!("{msg}:{round}:{attempt}:rl{}", at.timestamp_millis()),
            kind: KIND_DELIVER,
            payload: json!({"message_id": msg, "round": round, "attempt": attempt}),
            at: Some(at),
            correlation: msg.to_owned(),
        });
    }

    /// The first attempts of `msgs` (id, round, attempt) in one job under `key`: sent at once and
    /// recorded together, each message going on alone (its own retries, circuit, limits) from
    /// there. A message the batch cannot send plainly (its endpoint disabled, its circuit open,
    /// a rate limit) is handed to a `webhook.deliver` job of its own.
    pub fn batch(&mut self, key: String, msgs: &[(String, i32, i32)]) {
        let items: Vec<Value> = msgs.iter().map(|(id, r, a)| json!([id, r, a])).collect();
        self.0.push(PendingJob {
            correlation: key.clone(),
            key,
            kind: KIND_BATCH,
            payload: json!({ "messages": items }),
            at: None,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub async fn enqueue(queue: &dyn JobQueue, jobs: DeliverJobs) -> Result<(), QueueError> {
    let policy = queue.policy(QUEUE);
    let all: Vec<NewJob> = jobs
        .0
        .into_iter()
        .map(|j| NewJob {
            unique_key: Some(j.key),
            correlation_id: Some(j.correlation),
            run_at: j.at,
            ..policy.job(QUEUE, j.kind, j.payload)
        })
        .collect();
    for chunk in all.chunks(1000) {
        queue.enqueue_bulk(chunk.to_vec()).await?;
    }
    Ok(())
}

/// Gives an endpoint's held messages back to delivery, each with a fresh round of attempts.
pub async fn release_held(
    db: &Db,
    queue: &dyn JobQueue,
    clock: &dyn Clock,
    endpoint: &str,
) -> crate::error::Result<usize> {
    let now = clock.now();
    let released: Vec<(String, i32)> = with_db!(db, pool => {
        sqlx::query_as(
            "UPDATE webhook_messages SET status = 'pending', round_start = attempts, next_attempt_at = $2, updated_at = $2
             WHERE endpoint_id = $1 AND status = 'held' RETURNING id, attempts",
        )
        .bind(endpoint).bind(now).fetch_all(pool).await?
    });
    let mut jobs = DeliverJobs::default();
    for (id, attempts) in &released {
        jobs.deliver(id, *attempts, attempts + 1, None);
    }
    enqueue(queue, jobs).await?;
    Ok(released.len())
}

/// Puts back what an outage may have left without a job: a pending message whose attempt is
/// overdue by more than `grace` (its job's enqueue failed after its state was committed, say)
/// gets its job again, and an open circuit whose probe is overdue gets its probe. A job still
/// waiting is found by its unique key, so nothing is delivered twice for it. Returns how many
/// jobs it asked for.
pub async fn repair(
    db: &Db,
    queue: &dyn JobQueue,
    clock: &dyn Clock,
    grace: chrono::Duration,
) -> crate::error::Result<usize> {
    let before = clock.now() - grace;
    let pending: Vec<(String, i32, i32)> = with_db!(db, pool => {
        sqlx::query_as("SELECT id, round_start, attempts FROM webhook_messages WHERE status = 'pending' AND next_attempt_at < $1 ORDER BY next_attempt_at LIMIT 1000")
            .bind(before).fetch_all(pool).await?
    });
    let probes: Vec<(String, Option<DateTime<Utc>>)> = with_db!(db, pool => {
        sqlx::query_as("SELECT id, circuit_retry_at FROM webhook_endpoints WHERE circuit = 'open' AND disabled_at IS NULL AND circuit_retry_at < $1 LIMIT 1000")
            .bind(before).fetch_all(pool).await?
    });
    // Held on a circuit that closed meanwhile (a message held from a stale read of the circuit).
    let stranded: Vec<(String,)> = with_db!(db, pool => {
        sqlx::query_as(
            "SELECT DISTINCT m.endpoint_id FROM webhook_messages m JOIN webhook_endpoints e ON e.id = m.endpoint_id
             WHERE m.status = 'held' AND e.circuit = 'closed' AND e.disabled_at IS NULL AND m.updated_at < $1 LIMIT 100",
        )
        .bind(before).fetch_all(pool).await?
    });
    let mut released = 0;
    for (endpoint,) in &stranded {
        released += release_held(db, queue, clock, endpoint).await?;
    }
    let mut jobs = DeliverJobs::default();
    for (id, round, attempts) in &pending {
        jobs.deliver(id, *round, attempts + 1, None);
    }
    for (id, at) in &probes {
        jobs.probe(id, *at);
    }
    let n = jobs.0.len();
    enqueue(queue, jobs).await?;
    Ok(n + released)
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub started: DateTime<Utc>,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub class: Option<WebhookErrorClass>,
    pub error: Option<String>,
    pub retry_after: Option<Duration>,
    pub request_headers: BTreeMap<String, String>,
    pub response_headers: BTreeMap<String, String>,
    pub response_body: Option<String>,
}

impl Sent {
    pub fn delivered(&self) -> bool {
        self.class.is_none()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub endpoint_id: String,
    pub client_id: String,
    pub event_type: String,
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub round_start: i32,
    pub last_error: Option<String>,
}

const MSG_COLUMNS: &str =
    "id, endpoint_id, client_id, event_type, body, status, attempts, round_start, last_error";

impl MessageRow {
    /// An event over the size limit, recorded without a body.
    pub fn too_large(&self) -> bool {
        self.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("payload_too_large"))
    }
}

pub async fn load_message(db: &Db, id: &str) -> Result<Option<MessageRow>, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_as(&format!("SELECT {MSG_COLUMNS} FROM webhook_messages WHERE id = $1"))
            .bind(id).fetch_optional(pool).await
    })
}

fn db_failure(e: sqlx::Error) -> JobFailure {
    JobFailure::retryable("webhook.db", format!("database: {e}"))
}

/// Sends messages: the HTTP client behind the SSRF guard, the signing key and the schedule.
pub struct Deliverer {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: WebhookConfig,
    key: Arc<SecretSlice<u8>>,
    http: reqwest::Client,
    pub queue: Arc<dyn JobQueue>,
    ops: Publisher,
    /// Per endpoint with a rate limit: (the second, deliveries started in it, put off in it), in
    /// this process.
    limiter: Mutex<HashMap<String, (i64, i32, i32)>>,
    /// Per endpoint: when a `delivered` change last went on the stream, and the newest held back.
    quiet: Arc<Mutex<HashMap<String, Quiet>>>,
}

/// An endpoint's `delivered` changes: when one last went on the stream, and the newest held back.
type Quiet = (Option<Instant>, Option<String>);

/// At most one `delivered` change per endpoint on the stream this often.
const QUIET: Duration = Duration::from_millis(500);

impl Deliverer {
    pub fn from_state(s: &crate::state::AppState) -> anyhow::Result<Self> {
        let resolver = endpoints::resolver(&s.config.webhooks)?;
        Self::new(
            s.db.clone(),
            s.clock.clone(),
            s.config.webhooks.clone(),
            s.signing_key.clone(),
            s.queue.clone(),
            s.ops(),
            resolver,
        )
    }

    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
        key: Arc<SecretSlice<u8>>,
        queue: Arc<dyn JobQueue>,
        ops: Publisher,
        resolver: hickory_resolver::TokioResolver,
    ) -> anyhow::Result<Self> {
        let guard = Arc::new(config.guard());
        let http = crate::outbound::client(
            crate::outbound::GuardedResolver::new(guard, resolver),
            config.timeout,
        )?;
        Ok(Self {
            db,
            clock,
            config,
            key,
            http,
            queue,
            ops,
            limiter: Mutex::new(HashMap::new()),
            quiet: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// One signed request of `body` as message `msg_id` to `ep`.
    pub async fn send(&self, ep: &EndpointRow, msg_id: &str, body: &str) -> Sent {
        let started = self.clock.now();
        let ts = started.timestamp();
        let secrets = ep.secrets(&self.key, started);
        let refs: Vec<&[u8]> = secrets.iter().map(|s| s.as_slice()).collect();
        let signature = super::signing::signature_header(&refs, msg_id, ts, body.as_bytes());
        let mut request_headers = BTreeMap::from([
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                concat!("AIrWAVE-Webhooks/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
            ("webhook-id".to_owned(), msg_id.to_owned()),
            ("webhook-timestamp".to_owned(), ts.to_string()),
            ("webhook-signature".to_owned(), signature),
        ]);
        let custom = ep.headers();
        let mut sent = Sent {
            started,
            duration_ms: 0,
            status: None,
            class: None,
            error: None,
            retry_after: None,
            request_headers: BTreeMap::new(),
            response_headers: BTreeMap::new(),
            response_body: None,
        };
        let url = match url::Url::parse(&ep.url) {
            Ok(u) => u,
            Err(e) => {
                sent.class = Some(WebhookErrorClass::Refused);
                sent.error = Some(format!("the endpoint's URL does not parse: {e}"));
                return sent;
            }
        };
        if let Err(e) = self.config.guard().check_url(&url) {
            sent.class = Some(WebhookErrorClass::Refused);
            sent.error = Some(e.to_string());
            sent.request_headers = request_headers;
            return sent;
        }
        let mut request = self.http.post(url).body(body.to_owned());
        for (k, v) in request_headers.iter().chain(custom.iter()) {
            request = request.header(k, v);
        }
        for k in custom.keys() {
            request_headers.insert(k.clone(), "[redacted]".into());
        }
        sent.request_headers = request_headers;
        let clock = Instant::now();
        let result = request.send().await;
        match result {
            Err(e) => {
                sent.class = Some(classify(&e));
                sent.error = Some(error_chain(&e));
            }
            Ok(mut response) => {
                let status = response.status();
                sent.status = Some(status.as_u16());
                for (k, v) in response.headers().iter().take(50) {
                    let v: String = String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(500)
                        .collect();
                    sent.response_headers.insert(k.as_str().to_owned(), v);
                }
                if matches!(status.as_u16(), 429 | 503) {
                    sent.retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| retry_after(v, started));
                }
                let mut kept = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(c)) => {
                            kept.extend_from_slice(&c[..c.len().min(BODY_KEPT - kept.len())]);
                            if kept.len() >= BODY_KEPT {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            if status.is_success() {
                                // The answer counts: the body is only informative.
                                tracing::debug!(error = %e, "a webhook response's body broke off");
                            }
                            break;
                        }
                    }
                }
                if !kept.is_empty() {
                    sent.response_body = Some(String::from_utf8_lossy(&kept).into_owned());
                }
                if status.is_redirection() {
                    sent.class = Some(WebhookErrorClass::Redirect);
                    sent.error = Some(format!("answered {status} (redirects are not followed)"));
                } else if !status.is_success() {
                    sent.class = Some(WebhookErrorClass::Status);
                    sent.error = Some(format!("answered {status}"));
                }
            }
        }
        sent.duration_ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        sent
    }

    /// Whether to hold back a `delivered` change of `ep` from the stream: at most one per
    /// endpoint every [`QUIET`]; the newest one held back is published when it ends, so the
    /// console still ends on the latest state without a write to the stream per delivery.
    fn hold_back(&self, ep: &EndpointRow, msg: &str) -> bool {
        let mut map = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (t, p)| p.is_some() || t.is_some_and(|t| t.elapsed() < QUIET));
        }
        let slot = map.entry(ep.id.clone()).or_insert((None, None));
        let since = slot.0.map_or(QUIET, |t| t.elapsed());
        if since >= QUIET && slot.1.is_none() {
            slot.0 = Some(Instant::now());
            return false;
        }
        let first = slot.1.is_none();
        slot.1 = Some(msg.to_owned());
        if first {
            let (quiet, ops, clock) = (self.quiet.clone(), self.ops.clone(), self.clock.clone());
            let (endpoint, client) = (ep.id.clone(), ep.client_id.clone());
            let wait = QUIET.saturating_sub(since);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let latest = {
                    let mut map = quiet.lock().unwrap_or_else(|e| e.into_inner());
                    map.get_mut(&endpoint).and_then(|slot| {
                        slot.0 = Some(Instant::now());
                        slot.1.take()
                    })
                };
                if let Some(m) = latest {
                    endpoints::changed(
                        &ops,
                        clock.now(),
                        &endpoint,
                        &client,
                        "delivered",
                        Some(&m),
                        None,
                    )
                    .await;
                }
            });
        }
        true
    }

    /// Whether `ep`'s rate limit lets one more delivery start this second (in this process):
    /// `None` when it does, else when to try again — the refused spread over the seconds to come
    /// at the limit's pace, so a backlog is not fetched again every second.
    fn admit(&self, ep: &EndpointRow) -> Option<DateTime<Utc>> {
        let limit = ep.rate_limit_per_s?.max(1);
        let now = self.clock.now();
        let second = now.timestamp();
        let mut map = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (s, _, _)| *s >= second);
        }
        let slot = map.entry(ep.id.clone()).or_insert((second, 0, 0));
        if slot.0 != second {
            *slot = (second, 0, 0);
        }
        if slot.1 < limit {
            slot.1 += 1;
            return None;
        }
        slot.2 += 1;
        let wait = 1 + i64::from(slot.2 / limit);
        chrono::DateTime::from_timestamp(second + wait, 0)
    }

    /// Records an attempt and decides what follows: the message's new state, the endpoint's
    /// counters and circuit, and the jobs to enqueue.
    async fn record(
        &self,
        ep: &EndpointRow,
        msg: &MessageRow,
        sent: &Sent,
        probe: bool,
    ) -> Result<(), JobFailure> {
        let now = self.clock.now();
        let attempt = msg.attempts + 1;
        let in_round = attempt - msg.round_start;
        let config = &self.config;
        let mut jobs = DeliverJobs::default();
        let mut release = false;
        let mut events: Vec<(&'static str, Option<String>)> = Vec::new();
        let class: Option<&'static str> = sent.class.map(Into::into);
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            sqlx::query(
                "INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, started_at, duration_ms, status_code, outcome, error_class, error, request_headers, response_headers, response_body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(WebhookAttemptId::new(now).as_str()).bind(&msg.id).bind(&ep.id).bind(attempt).bind(sent.started)
            .bind(sent.duration_ms).bind(sent.status.map(i32::from)).bind(if sent.delivered() { "delivered" } else { "failed" })
            .bind(class).bind(sent.error.as_deref()).bind(json!(sent.request_headers).to_string())
            .bind(json!(sent.response_headers).to_string()).bind(sent.response_body.as_deref())
            .execute(&mut *tx).await.map_err(db_failure)?;
            let (status, next): (&str, Option<DateTime<Utc>>) = if sent.delivered() {
                // Written only when something changes (or a second after the last success was
                // recorded): a busy endpoint's row is not rewritten by every delivery.
                sqlx::query("UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, last_success_at = $2,
                        circuit = 'closed', circuit_retry_at = NULL, circuit_opens = 0
                     WHERE id = $1 AND (consecutive_failures <> 0 OR failing_since IS NOT NULL OR circuit <> 'closed'
                        OR last_success_at IS NULL OR last_success_at < $3)")
                    .bind(&ep.id).bind(now).bind(now - chrono::Duration::seconds(1)).execute(&mut *tx).await.map_err(db_failure)?;
                if ep.open() {
                    release = true;
                    events.push(("circuit_closed", None));
                }
                ("delivered", None)
            } else if sent.status == Some(410) {
                if disable!(tx, ep, now, "the endpoint answered 410 Gone") {
                    events.push(("disabled", Some("the endpoint answered 410 Gone".into())));
                }
                ("failed", None)
            } else {
                let (failures, since, circuit): (i32, Option<DateTime<Utc>>, String) = sqlx::query_as(
                    "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, failing_since = COALESCE(failing_since, $2), last_failure_at = $2
                     WHERE id = $1 RETURNING consecutive_failures, failing_since, circuit",
                )
                .bind(&ep.id).bind(now).fetch_one(&mut *tx).await.map_err(db_failure)?;
                let failing_for = since.map_or(chrono::Duration::zero(), |s| now - s);
                let disable_after = chrono::Duration::from_std(config.disable_after).unwrap_or(chrono::Duration::MAX);
                if failing_for >= disable_after {
                    let reason = format!("failing without a success since {}", since.map(|s| s.to_rfc3339()).unwrap_or_default());
                    if disable!(tx, ep, now, &reason) {
                        events.push(("disabled", Some(reason)));
                    }
                    ("failed", None)
                } else if sent.class == Some(WebhookErrorClass::Refused) && !probe {
                    // The guard refused the address: trying again changes nothing. (A refused
                    // probe keeps the circuit open and tries again later: the name may resolve
                    // to a public address again.)
                    ("failed", None)
                } else if probe || (circuit == "closed" && failures >= config.circuit_failures) {
                    let opens = if probe { ep.circuit_opens + 1 } else { 1 };
                    let cooldown = config.circuit_cooldown.saturating_mul(1 << (opens - 1).clamp(0, 16)).min(COOLDOWN_CAP);
                    let wait = cooldown.max(sent.retry_after.unwrap_or_default());
                    let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    sqlx::query("UPDATE webhook_endpoints SET circuit = 'open', circuit_retry_at = $2, circuit_opens = $3 WHERE id = $1")
                        .bind(&ep.id).bind(retry_at).bind(opens).execute(&mut *tx).await.map_err(db_failure)?;
                    jobs.probe(&ep.id, Some(retry_at));
                    if !probe {
                        events.push(("circuit_opened", Some(format!("{failures} consecutive failures; the next try at {}", retry_at.to_rfc3339()))));
                    }
                    ("held", Some(retry_at))
                } else if circuit == "open" {
                    // Another delivery opened it meanwhile: wait with the others.
                    ("held", None)
                } else if in_round < config.attempts() {
                    let wait = config.schedule.get(usize::try_from(in_round - 1).unwrap_or(0)).copied().unwrap_or_default();
                    let wait = wait.max(sent.retry_after.unwrap_or_default().min(RETRY_AFTER_CAP));
                    let at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    jobs.deliver(&msg.id, msg.round_start, attempt + 1, Some(at));
                    ("pending", Some(at))
                } else {
                    ("failed", None)
                }
            };
            sqlx::query(
                "UPDATE webhook_messages SET status = $2, attempts = $3, next_attempt_at = $4, last_status = $5, last_error = $6, updated_at = $7,
                    delivered_at = CASE WHEN $2 = 'delivered' THEN $7 ELSE delivered_at END
                 WHERE id = $1",
            )
            .bind(&msg.id).bind(status).bind(attempt).bind(next).bind(sent.status.map(i32::from)).bind(sent.error.as_deref()).bind(now)
            .execute(&mut *tx).await.map_err(db_failure)?;
            tx.commit().await.map_err(db_failure)?;
            events.insert(0, (match status { "delivered" => "delivered", "pending" => "retrying", "held" => "held", _ => "failed" }, sent.error.clone()));
        });
        if release {
            release_held(&self.db, &*self.queue, &*self.clock, &ep.id)
                .await
                .map_err(|e| JobFailure::retryable("webhook.release", e.to_string()))?;
        }
        enqueue(&*self.queue, jobs)
            .await
            .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()))?;
        for (kind, detail) in events {
            if kind == "delivered" && self.hold_back(ep, &msg.id) {
                continue;
            }
            if matches!(kind, "circuit_opened" | "disabled") {
                tracing::warn!(endpoint = %ep.id, client = %ep.client_id, kind, detail = detail.as_deref().unwrap_or(""), "webhook endpoint failing");
            }
            endpoints::changed(
                &self.ops,
                now,
                &ep.id,
                &ep.client_id,
                kind,
                Some(&msg.id),
                detail,
            )
            .await;
        }
        Ok(())
    }

    async fn deliver_job(&self, msg_id: &str, round: i32, attempt: i32) -> Result<(), JobFailure> {
        let Some(msg) = load_message(&self.db, msg_id).await.map_err(db_failure)? else {
            return Ok(());
        };
        if msg.status != "pending" || msg.round_start != round || msg.attempts >= attempt {
            // Delivered, held or failed since, or a replay started a new round: nothing to do.
            return Ok(());
        }
        let Some(ep) = endpoints::load(&self.db, &msg.endpoint_id)
            .await
            .map_err(db_failure)?
        else {
            return Ok(());
        };
        if ep.disabled_at.is_some() {
            let reason = format!(
                "the endpoint is disabled: {}",
                ep.disabled_reason.as_deref().unwrap_or("no reason given")
            );
            self.set_status(&msg.id, "failed", Some(&reason)).await?;
            return Ok(());
        }
        if ep.open() {
            self.set_status(&msg.id, "held", None).await?;
            let mut jobs = DeliverJobs::default();
            jobs.probe(&ep.id, ep.circuit_retry_at);
            return enqueue(&*self.queue, jobs)
                .await
                .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()));
        }
        if let Some(at) = self.admit(&ep) {
            let mut jobs = DeliverJobs::default();
            jobs.put_off(msg_id, round, attempt, at);
            return enqueue(&*self.queue, jobs)
                .await
                .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()));
        }
        let sent = self.send(&ep, &msg.id, &msg.body).await;
        self.record(&ep, &msg, &sent, false).await
    }

    /// A batch of first attempts: the messages and their endpoints read in two queries, the plain
    /// ones sent at once, their outcomes recorded together (successes in one transaction; a
    /// failure through [`Self::record`], which decides its retry, circuit or disabling).
    async fn batch_job(&self, items: &[(String, i32, i32)]) -> Result<(), JobFailure> {
        if items.is_empty() {
            return Ok(());
        }
        let msgs: Vec<MessageRow> = with_db!(&self.db, pool => {
            let mut q = sqlx::QueryBuilder::new(format!("SELECT {MSG_COLUMNS} FROM webhook_messages WHERE id IN ("));
            let mut list = q.separated(", ");
            for (id, _, _) in items {
                list.push_bind(id.as_str());
            }
            q.push(")");
            q.build_query_as().fetch_all(pool).await.map_err(db_failure)?
        });
        let mut endpoint_ids: Vec<&str> = msgs.iter().map(|m| m.endpoint_id.as_str()).collect();
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        let eps: Vec<EndpointRow> = if endpoint_ids.is_empty() {
            Vec::new()
        } else {
            with_db!(&self.db, pool => {
                let mut q = sqlx::QueryBuilder::new(format!("SELECT {} FROM webhook_endpoints WHERE id IN (", endpoints::COLUMNS));
                let mut list = q.separated(", ");
                for id in &endpoint_ids {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build_query_as().fetch_all(pool).await.map_err(db_failure)?
            })
        };
        let msgs: HashMap<&str, &MessageRow> = msgs.iter().map(|m| (m.id.as_str(), m)).collect();
        let eps: HashMap<&str, &EndpointRow> = eps.iter().map(|e| (e.id.as_str(), e)).collect();
        let mut plain: Vec<(&MessageRow, &EndpointRow)> = Vec::new();
        let mut alone = DeliverJobs::default();
        for (id, round, attempt) in items {
            let Some(msg) = msgs.get(id.as_str()) else {
                continue;
            };
            if msg.status != "pending" || msg.round_start != *round || msg.attempts >= *attempt {
                continue;
            }
            let Some(ep) = eps.get(msg.endpoint_id.as_str()) else {
                continue;
            };
            if ep.disabled_at.is_some() || ep.open() || ep.rate_limit_per_s.is_some() {
                alone.deliver(id, *round, *attempt, None);
            } else {
                plain.push((msg, ep));
            }
        }
        enqueue(&*self.queue, alone)
            .await
            .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()))?;
        let mut sending: FuturesUnordered<_> = plain
            .into_iter()
            .map(|(msg, ep)| async move { (msg, ep, self.send(ep, &msg.id, &msg.body).await) })
            .collect();
        let mut ended = Vec::new();
        let flush = tokio::time::sleep(BATCH_FLUSH);
        tokio::pin!(flush);
        loop {
            tokio::select! {
                next = sending.next() => match next {
                    Some(done) => ended.push(done),
                    None => break,
                },
                () = &mut flush => break,
            }
        }
        self.record_all(ended).await?;
        while let Some(done) = sending.next().await {
            self.record_all(vec![done]).await?;
        }
        Ok(())
    }

    /// Records attempts of a batch: every success in one transaction (the attempts in one
    /// statement, the messages in one per status code, the endpoints in one), every failure
    /// through [`Self::record`].
    async fn record_all(
        &self,
        ended: Vec<(&MessageRow, &EndpointRow, Sent)>,
    ) -> Result<(), JobFailure> {
        let (ok, failed): (Vec<_>, Vec<_>) = ended.into_iter().partition(|(_, _, s)| s.delivered());
        for (msg, ep, sent) in &failed {
            self.record(ep, msg, sent, false).await?;
        }
        if ok.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let mut by_status: BTreeMap<(Option<i32>, i32), Vec<&str>> = BTreeMap::new();
        for (msg, _, sent) in &ok {
            by_status
                .entry((sent.status.map(i32::from), msg.attempts + 1))
                .or_default()
                .push(msg.id.as_str());
        }
        let mut endpoint_ids: Vec<&str> = ok.iter().map(|(_, e, _)| e.id.as_str()).collect();
        endpoint_ids.sort_unstable();
        endpoint_ids.dedup();
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(db_failure)?;
            for chunk in ok.chunks(200) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, started_at, duration_ms, status_code, outcome, error_class, error, request_headers, response_headers, response_body) ",
                );
                q.push_values(chunk, |mut b, (msg, ep, sent)| {
                    b.push_bind(WebhookAttemptId::new(now).to_string())
                        .push_bind(msg.id.as_str())
                        .push_bind(ep.id.as_str())
                        .push_bind(msg.attempts + 1)
                        .push_bind(sent.started)
                        .push_bind(sent.duration_ms)
                        .push_bind(sent.status.map(i32::from))
                        .push_bind("delivered")
                        .push_bind(None::<&str>)
                        .push_bind(None::<&str>)
                        .push_bind(json!(sent.request_headers).to_string())
                        .push_bind(json!(sent.response_headers).to_string())
                        .push_bind(sent.response_body.as_deref());
                });
                q.build().execute(&mut *tx).await.map_err(db_failure)?;
            }
            for ((status, attempt), ids) in &by_status {
                for chunk in ids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::new("UPDATE webhook_messages SET status = 'delivered', attempts = ");
                    q.push_bind(*attempt)
                        .push(", next_attempt_at = NULL, last_status = ")
                        .push_bind(*status)
                        .push(", last_error = NULL, updated_at = ")
                        .push_bind(now)
                        .push(", delivered_at = ")
                        .push_bind(now)
                        .push(" WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    q.build().execute(&mut *tx).await.map_err(db_failure)?;
                }
            }
            // As in `record`: an endpoint's row is written only when something changes, or a
            // second after its last success was recorded.
            for chunk in endpoint_ids.chunks(500) {
                let mut q = sqlx::QueryBuilder::new("UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL, last_success_at = ");
                q.push_bind(now)
                    .push(", circuit = 'closed', circuit_retry_at = NULL, circuit_opens = 0 WHERE (consecutive_failures <> 0 OR failing_since IS NOT NULL OR circuit <> 'closed' OR last_success_at IS NULL OR last_success_at < ")
                    .push_bind(now - chrono::Duration::seconds(1))
                    .push(") AND id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await.map_err(db_failure)?;
            }
            tx.commit().await.map_err(db_failure)?;
        });
        for (msg, ep, _) in &ok {
            if self.hold_back(ep, &msg.id) {
                continue;
            }
            endpoints::changed(
                &self.ops,
                now,
                &ep.id,
                &ep.client_id,
                "delivered",
                Some(&msg.id),
                None,
            )
            .await;
        }
        Ok(())
    }

    async fn probe_job(&self, endpoint: &str) -> Result<(), JobFailure> {
        let Some(ep) = endpoints::load(&self.db, endpoint)
            .await
            .map_err(db_failure)?
        else {
            return Ok(());
        };
        if ep.disabled_at.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        if !ep.open() {
            release_held(&self.db, &*self.queue, &*self.clock, endpoint)
                .await
                .map_err(|e| JobFailure::retryable("webhook.release", e.to_string()))?;
            return Ok(());
        }
        if let Some(at) = ep.circuit_retry_at.filter(|at| *at > now) {
            let mut jobs = DeliverJobs::default();
            jobs.probe(endpoint, Some(at));
            return enqueue(&*self.queue, jobs)
                .await
                .map_err(|e| JobFailure::retryable("webhook.enqueue", e.to_string()));
        }
        let oldest: Option<MessageRow> = with_db!(&self.db, pool => {
            sqlx::query_as(&format!("SELECT {MSG_COLUMNS} FROM webhook_messages WHERE endpoint_id = $1 AND status = 'held' ORDER BY created_at, id LIMIT 1"))
                .bind(endpoint).fetch_optional(pool).await.map_err(db_failure)?
        });
        let Some(msg) = oldest else {
            // Nothing waits: close the circuit; the next delivery tells.
            with_db!(&self.db, pool => {
                sqlx::query("UPDATE webhook_endpoints SET circuit = 'closed', circuit_retry_at = NULL WHERE id = $1")
                    .bind(endpoint).execute(pool).await.map_err(db_failure)?;
            });
            return Ok(());
        };
        let sent = self.send(&ep, &msg.id, &msg.body).await;
        self.record(&ep, &msg, &sent, true).await
    }

    async fn set_status(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), JobFailure> {
        let now = self.clock.now();
        with_db!(&self.db, pool => {
            sqlx::query("UPDATE webhook_messages SET status = $2, last_error = COALESCE($3, last_error), updated_at = $4 WHERE id = $1")
                .bind(id).bind(status).bind(error).bind(now).execute(pool).await.map_err(db_failure)?;
        });
        Ok(())
    }

    /// Sends a `webhook.test` message to `ep` now (whatever its circuit) and returns the
    /// attempt. It counts in the endpoint's health score, not in its circuit.
    pub async fn test(&self, ep: &EndpointRow) -> crate::error::Result<WebhookAttemptOut> {
        let now = self.clock.now();
        let id = WebhookMessageId::new(now);
        let data = json!({"endpoint_id": ep.id, "message": "a test event from AIrWAVE"});
        let body = super::catalogue::body(super::catalogue::TEST, now, &data);
        let sent = self.send(ep, id.as_str(), &body).await;
        let attempt_id = WebhookAttemptId::new(now);
        let class: Option<&'static str> = sent.class.map(Into::into);
        let status = if sent.delivered() {
            "delivered"
        } else {
            "failed"
        };
        with_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO webhook_messages (id, endpoint_id, client_id, event_id, event_type, body, status, attempts, last_status, last_error, created_at, updated_at, delivered_at)
                 VALUES ($1, $2, $3, NULL, $4, $5, $6, 1, $7, $8, $9, $9, CASE WHEN $6 = 'delivered' THEN $9 ELSE NULL END)",
            )
            .bind(id.as_str()).bind(&ep.id).bind(&ep.client_id).bind(super::catalogue::TEST).bind(&body).bind(status)
            .bind(sent.status.map(i32::from)).bind(sent.error.as_deref()).bind(now)
            .execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO webhook_attempts (id, message_id, endpoint_id, attempt, started_at, duration_ms, status_code, outcome, error_class, error, request_headers, response_headers, response_body)
                 VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(attempt_id.as_str()).bind(id.as_str()).bind(&ep.id).bind(sent.started).bind(sent.duration_ms)
            .bind(sent.status.map(i32::from)).bind(status).bind(class).bind(sent.error.as_deref())
            .bind(json!(sent.request_headers).to_string()).bind(json!(sent.response_headers).to_string()).bind(sent.response_body.as_deref())
            .execute(&mut *tx).await?;
            tx.commit().await?;
        });
        endpoints::changed(
            &self.ops,
            now,
            &ep.id,
            &ep.client_id,
            status,
            Some(id.as_str()),
            sent.error.clone(),
        )
        .await;
        Ok(WebhookAttemptOut {
            id: attempt_id.to_string(),
            message_id: id.to_string(),
            attempt: 1,
            started_at: sent.started,
            duration_ms: sent.duration_ms,
            status_code: sent.status.map(i32::from),
            delivered: sent.delivered(),
            error_class: sent.class,
            error: sent.error,
            request_headers: sent.request_headers,
            response_headers: sent.response_headers,
            response_body: sent.response_body,
        })
    }
}

/// An error's class, from reqwest's error and its sources (the guard's refusal among them).
fn classify(e: &reqwest::Error) -> WebhookErrorClass {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return match r {
                Refused::Unresolved { .. } => WebhookErrorClass::Dns,
                _ => WebhookErrorClass::Refused,
            };
        }
        source = s.source();
    }
    if e.is_timeout() {
        return WebhookErrorClass::Timeout;
    }
    let text = error_chain(e).to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        WebhookErrorClass::Tls
    } else {
        WebhookErrorClass::Connect
    }
}

/// The error and its sources, without the endpoint's URL (its query may carry a token).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    if let Some(u) = e.url() {
        out = out
            .replace(&format!(" for url ({u})"), "")
            .replace(u.as_str(), "[url]");
    }
    out.chars().take(1000).collect()
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP));
    }
    let at: std::time::SystemTime = httpdate::parse_http_date(v.trim()).ok()?;
    let at: DateTime<Utc> = at.into();
    (at - now).to_std().ok().map(|d| d.min(RETRY_AFTER_CAP))
}

#[async_trait]
impl JobHandler for Deliverer {
    async fn handle(&self, job: &Job, _ctx: &JobContext) -> Result<Value, JobFailure> {
        let p = &job.payload;
        let bad = || {
            JobFailure::permanent(
                "webhook.payload",
                "the job's payload is not a webhook job's",
            )
        };
        match job.kind.as_str() {
            KIND_DELIVER => {
                let id = p
                    .get("message_id")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                let round = p
                    .get("round")
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(bad)?;
                let attempt = p
                    .get("attempt")
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(bad)?;
                self.deliver_job(id, round, attempt).await?;
            }
            KIND_BATCH => {
                let items = p
                    .get("messages")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() <= BATCH * 4)
                    .ok_or_else(bad)?;
                let items = items
                    .iter()
                    .map(|i| {
                        let id = i.get(0).and_then(Value::as_str)?;
                        let n = |k: usize| {
                            i.get(k)
                                .and_then(Value::as_i64)
                                .and_then(|n| i32::try_from(n).ok())
                        };
                        Some((id.to_owned(), n(1)?, n(2)?))
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(bad)?;
                self.batch_job(&items).await?;
            }
            KIND_PROBE => {
                let id = p
                    .get("endpoint_id")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?;
                self.probe_job(id).await?;
            }
            _ => return Err(bad()),
        }
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = Utc::now();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("99999999", now), Some(RETRY_AFTER_CAP));
        let later = now + chrono::Duration::seconds(300);
        let date = httpdate::fmt_http_date(later.into());
        let d = retry_after(&date, now).unwrap().as_secs();
        assert!((298..=300).contains(&d), "{d}");
        assert_eq!(retry_after("soon", now), None);
    }
}
