//! The Redis job queue (when `REDIS_URL` is set).
//!
//! Every state change is one Lua script, so it is atomic on the server and no job is ever visible
//! to two workers. Keys, under a prefix (default `airwave`):
//! - `P:job:ID` — a hash with the job's fields (times in epoch milliseconds);
//! - `P:q:QUEUE:ready` — ready jobs, scored `(1000 - priority) · 10¹² + seq`: highest priority
//!   first, then enqueue order;
//! - `P:q:QUEUE:delayed` / `:retrying` — scored by `run_at`; moved to `ready` by `fetch` when due;
//! - `P:q:QUEUE:active` — scored by lease expiry; `recover_expired` scans it;
//! - `P:q:QUEUE:completed|dead|cancelled` — scored by finish time (retention trims them);
//! - `P:q:QUEUE:unique` — unique key → job id while the job is waiting or active;
//! - `P:q:QUEUE:paused`, `P:queues` (every queue seen), `P:seq` (the enqueue counter).
//!
//! Times come from the application's clock, not Redis's, so tests move time. Every call runs under
//! a timeout: during an outage a call fails fast and the `ConnectionManager` reconnects by itself.
//! A job that dies writes `job.dead` into `P:outbox` in the same script (so a crash cannot lose
//! it); [`RedisQueue::relay_outbox`] moves it into the database's outbox under an event id derived
//! from the entry, so concurrent or repeated relays write it once.
//! Redis Cluster is not supported (scripts build key names from the prefix).

use super::Audited;
use super::{Attempt, DeadGroup, JobFilter};
use super::{
    Backoff, CancelOutcome, Counts, Enqueued, FailOutcome, Job, JobFailure, JobState, NewJob,
    QueueAdmin, QueueError, QueuePolicy, Result, WorkQueue,
};
use crate::clock::Clock;
use crate::db::Db;
use crate::ids::JobId;
use crate::with_db;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use redis::aio::ConnectionManager;
use redis::Script;
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared Lua: key names and moving a job to `ready`.
const PRELUDE: &str = r#"
local P = ARGV[1]
local function qk(q, s) return P .. ':q:' .. q .. ':' .. s end
local function jk(id) return P .. ':job:' .. id end
local function ready_score(id)
  local f = redis.call('HMGET', jk(id), 'priority', 'seq')
  return (1000 - tonumber(f[1])) * 1000000000000 + tonumber(f[2])
end
local function unhold(q, id)
  local uk = redis.call('HGET', jk(id), 'unique_key')
  if uk and uk ~= '' and redis.call('HGET', qk(q, 'unique'), uk) == id then redis.call('HDEL', qk(q, 'unique'), uk) end
end
-- Ends an attempt that failed (or whose lease expired): retry after `delay`, or dead.
local function fail_job(id, msg, fp, retryable, unit, now)
  local j = jk(id)
  local f = redis.call('HMGET', j, 'queue', 'attempts', 'max_attempts', 'backoff_base_ms', 'backoff_cap_ms', 'worker_id', 'started_at')
  local q, attempts, maxa = f[1], tonumber(f[2]), tonumber(f[3])
  redis.call('ZREM', qk(q, 'active'), id)
  redis.call('RPUSH', j .. ':attempts', cjson.encode({attempt = attempts, worker_id = f[6], started_at = f[7], finished_at = now, outcome = 'failed', error = msg, fingerprint = fp}))
  redis.call('HSET', j, 'last_error', msg, 'error_fingerprint', fp, 'worker_id', '', 'lease_until', '', 'updated_at', now)
  if retryable == '1' and attempts < maxa then
    local ceiling = math.min(tonumber(f[5]), tonumber(f[4]) * (2 ^ (attempts - 1)))
    local at = now + math.floor(ceiling * tonumber(unit))
    redis.call('HSET', j, 'state', 'retrying', 'run_at', at)
    redis.call('ZADD', qk(q, 'retrying'), at, id)
    return {'retry', tostring(at)}
  end
  redis.call('HSET', j, 'state', 'dead', 'finished_at', now, 'run_at', now)
  redis.call('ZADD', qk(q, 'dead'), now, id)
  unhold(q, id)
  -- `job.dead` goes into the Redis side of the outbox in the same script, so no crash can lose it;
  -- `relay_outbox` moves it to the database's outbox.
  local kind = redis.call('HGET', j, 'kind')
  local n = redis.call('INCR', P .. ':outbox:seq')
  redis.call('HSET', P .. ':outbox', n, cjson.encode({job_id = id, queue = q, kind = kind, attempts = attempts, error = msg, fingerprint = fp, at = now}))
  return {'dead', q, tostring(n)}
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, now, then per job: queue, id, kind, payload, priority, run_at, max_attempts, base, cap,
-- unique_key, correlation_id, max_waiting. All or nothing: when a queue would pass its limit,
-- nothing is written and {'full', queue} comes back; else {'ok'|'dup', id} per job, flattened.
local now, N = tonumber(ARGV[2]), 12
local pending, adding = {}, {}
for i = 3, #ARGV, N do
  local q, uk = ARGV[i], ARGV[i + 9]
  if pending[q] == nil then
    pending[q] = redis.call('ZCARD', qk(q, 'ready')) + redis.call('ZCARD', qk(q, 'delayed')) + redis.call('ZCARD', qk(q, 'retrying'))
    adding[q] = 0
  end
  if uk == '' or redis.call('HEXISTS', qk(q, 'unique'), uk) == 0 then
    adding[q] = adding[q] + 1
    if pending[q] + adding[q] > tonumber(ARGV[i + 11]) then return {'full', q} end
  end
end
local count = (#ARGV - 2) / N
local woken = {}
local seq = redis.call('INCRBY', P .. ':seq', count) - count
local out = {}
for i = 3, #ARGV, N do
  local q, id, uk, run_at = ARGV[i], ARGV[i + 1], ARGV[i + 9], tonumber(ARGV[i + 5])
  seq = seq + 1
  local held = false
  if uk ~= '' then held = redis.call('HGET', qk(q, 'unique'), uk) end
  if held then
    out[#out + 1] = 'dup'
    out[#out + 1] = held
  else
    local state = 'waiting'
    if run_at > now then state = 'delayed' end
    redis.call('HSET', jk(id), 'id', id, 'queue', q, 'kind', ARGV[i + 2], 'payload', ARGV[i + 3], 'priority', ARGV[i + 4], 'state', state,
      'run_at', run_at, 'attempts', 0, 'max_attempts', ARGV[i + 6], 'backoff_base_ms', ARGV[i + 7], 'backoff_cap_ms', ARGV[i + 8],
      'unique_key', uk, 'correlation_id', ARGV[i + 10], 'progress', 0, 'cancel_requested', 0, 'created_at', now, 'updated_at', now, 'seq', seq)
    if state == 'delayed' then
      redis.call('ZADD', qk(q, 'delayed'), run_at, id)
    else
      redis.call('ZADD', qk(q, 'ready'), (1000 - tonumber(ARGV[i + 4])) * 1000000000000 + seq, id)
    end
    if uk ~= '' then redis.call('HSET', qk(q, 'unique'), uk, id) end
    out[#out + 1] = 'ok'
    out[#out + 1] = id
    if state == 'waiting' then woken[q] = true end
  end
end
for q, _ in pairs(pending) do redis.call('SADD', P .. ':queues', q) end
for q, _ in pairs(woken) do redis.call('PUBLISH', P .. ':wake', q) end
return out
"#,
    )
});

/// Jobs per enqueue script call (each call is atomic; a bulk enqueue is atomic per chunk).
const ENQUEUE_CHUNK: usize = 500;

static FETCH: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, queue, worker, max, lease_until, now
local q, w, max, lease, now = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if redis.call('EXISTS', qk(q, 'paused')) == 1 then return {} end
for _, set in ipairs({'delayed', 'retrying'}) do
  local due = redis.call('ZRANGEBYSCORE', qk(q, set), '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', qk(q, set), id)
    redis.call('ZADD', qk(q, 'ready'), ready_score(id), id)
  end
end
local popped = redis.call('ZPOPMIN', qk(q, 'ready'), max)
local out, act = {}, {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local j = jk(id)
  redis.call('HINCRBY', j, 'attempts', 1)
  -- updated_at is implied by started_at (readers take the latest of the three times)
  redis.call('HSET', j, 'state', 'active', 'worker_id', w, 'lease_until', lease, 'started_at', now, 'cancel_requested', 0)
  act[#act + 1] = lease
  act[#act + 1] = id
  out[#out + 1] = redis.call('HGETALL', j)
end
if #act > 0 then redis.call('ZADD', qk(q, 'active'), unpack(act)) end
return out
"#,
    )
});

static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, worker, lease_until, now, ids...
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', jk(id), 'state', 'worker_id', 'queue', 'cancel_requested')
  if f[1] == 'active' and f[2] == ARGV[2] then
    redis.call('HSET', jk(id), 'lease_until', ARGV[3], 'updated_at', ARGV[4])
    redis.call('ZADD', qk(f[3], 'active'), ARGV[3], id)
    out[#out + 1] = {1, tonumber(f[4])}
  else
    out[#out + 1] = {0, 0}
  end
end
return out
"#,
    )
});

/// Checks that `worker` holds `id`; the rest of each script follows it.
const HELD: &str = r#"
local id, w, now = ARGV[2], ARGV[3], tonumber(ARGV[4])
local f = redis.call('HMGET', jk(id), 'state', 'worker_id', 'queue', 'attempts', 'started_at')
if f[1] ~= 'active' or f[2] ~= w then return 0 end
local q = f[3]
"#;

static PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        r#"{HELD}
-- ARGV: P, id, worker, now, percent, message
redis.call('HSET', jk(id), 'progress', ARGV[5], 'progress_message', ARGV[6], 'updated_at', now)
return 1
"#
    ))
});

static COMPLETE_MANY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, worker, now, then id, result pairs. Returns 1 (completed) or 0 (not held) per job.
-- The successful attempt is not pushed to the attempts list: `done_by` with the job's own
-- attempts / started_at / finished_at describe it (the hot path stays four calls a job).
-- Readers derive progress 100, no worker, no lease and updated_at from state and finished_at.
local w, now = ARGV[2], ARGV[3]
local out, per_queue = {}, {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local j = jk(id)
  local f = redis.call('HMGET', j, 'state', 'worker_id', 'queue', 'unique_key')
  if f[1] ~= 'active' or f[2] ~= w then
    out[#out + 1] = 0
  else
    local q, uk = f[3], f[4]
    redis.call('HSET', j, 'state', 'completed', 'result', ARGV[i + 1], 'done_by', w, 'finished_at', now)
    local ids = per_queue[q]
    if not ids then ids = {}; per_queue[q] = ids end
    ids[#ids + 1] = id
    if uk and uk ~= '' and redis.call('HGET', qk(q, 'unique'), uk) == id then redis.call('HDEL', qk(q, 'unique'), uk) end
    out[#out + 1] = 1
  end
end
for q, ids in pairs(per_queue) do
  redis.call('ZREM', qk(q, 'active'), unpack(ids))
  local z = {}
  for _, id in ipairs(ids) do z[#z + 1] = now; z[#z + 1] = id end
  redis.call('ZADD', qk(q, 'completed'), unpack(z))
end
return out
"#,
    )
});

static FAIL: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        r#"{HELD}
-- ARGV: P, id, worker, now, message, fingerprint, retryable, jitter
return fail_job(id, ARGV[5], ARGV[6], ARGV[7], ARGV[8], now)
"#
    ))
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        r#"{HELD}
-- ARGV: P, id, worker, now
redis.call('HINCRBY', jk(id), 'attempts', -1)
redis.call('HSET', jk(id), 'state', 'waiting', 'worker_id', '', 'lease_until', '', 'run_at', now, 'updated_at', now)
redis.call('ZREM', qk(q, 'active'), id)
redis.call('ZADD', qk(q, 'ready'), ready_score(id), id)
redis.call('PUBLISH', P .. ':wake', q)
return q
"#
    ))
});

static FINISH_CANCELLED: LazyLock<Script> = LazyLock::new(|| {
    script(&format!(
        r#"{HELD}
-- ARGV: P, id, worker, now
redis.call('HSET', jk(id), 'state', 'cancelled', 'worker_id', '', 'lease_until', '', 'updated_at', now, 'finished_at', now)
redis.call('ZREM', qk(q, 'active'), id)
redis.call('ZADD', qk(q, 'cancelled'), now, id)
unhold(q, id)
return 1
"#
    ))
});

static RECOVER: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, now, message, fingerprint. Returns the ids that died.
local now = tonumber(ARGV[2])
local dead = {}
for _, q in ipairs(redis.call('SMEMBERS', P .. ':queues')) do
  local expired = redis.call('ZRANGEBYSCORE', qk(q, 'active'), '-inf', '(' .. now, 'LIMIT', 0, 1000)
  for _, id in ipairs(expired) do
    local r = fail_job(id, ARGV[3], ARGV[4], '1', '0', now)
    if r[1] == 'dead' then dead[#dead + 1] = id end
  end
  dead[#dead + 1] = '#' .. #expired
end
return dead
"#,
    )
});

static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, id, now
local id, now = ARGV[2], ARGV[3]
local f = redis.call('HMGET', jk(id), 'state', 'queue')
if not f[1] then return {'missing', ''} end
local q = f[2]
if f[1] == 'waiting' or f[1] == 'delayed' or f[1] == 'retrying' then
  redis.call('ZREM', qk(q, 'ready'), id)
  redis.call('ZREM', qk(q, 'delayed'), id)
  redis.call('ZREM', qk(q, 'retrying'), id)
  redis.call('HSET', jk(id), 'state', 'cancelled', 'updated_at', now, 'finished_at', now)
  redis.call('ZADD', qk(q, 'cancelled'), now, id)
  unhold(q, id)
  return {'cancelled', ''}
end
if f[1] == 'active' then
  redis.call('HSET', jk(id), 'cancel_requested', 1, 'updated_at', now)
  return {'requested', ''}
end
return {'wrong', f[1]}
"#,
    )
});

static RETRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, id, now
local id, now = ARGV[2], ARGV[3]
local f = redis.call('HMGET', jk(id), 'state', 'queue', 'unique_key')
if not f[1] then return {'missing', ''} end
if f[1] ~= 'dead' and f[1] ~= 'cancelled' then return {'wrong', f[1]} end
local q, uk = f[2], f[3]
if uk and uk ~= '' then
  local held = redis.call('HGET', qk(q, 'unique'), uk)
  if held and held ~= id then return {'conflict', ''} end
  redis.call('HSET', qk(q, 'unique'), uk, id)
end
redis.call('ZREM', qk(q, f[1]), id)
redis.call('HSET', jk(id), 'state', 'waiting', 'attempts', 0, 'run_at', now, 'updated_at', now, 'finished_at', '', 'cancel_requested', 0)
redis.call('ZADD', qk(q, 'ready'), ready_score(id), id)
redis.call('PUBLISH', P .. ':wake', q)
return {'ok', q}
"#,
    )
});

static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, id, now
local id, now = ARGV[2], ARGV[3]
local f = redis.call('HMGET', jk(id), 'state', 'queue')
if not f[1] then return {'missing', ''} end
if f[1] ~= 'delayed' and f[1] ~= 'retrying' then return {'wrong', f[1]} end
local q = f[2]
redis.call('ZREM', qk(q, 'delayed'), id)
redis.call('ZREM', qk(q, 'retrying'), id)
redis.call('HSET', jk(id), 'state', 'waiting', 'run_at', now, 'updated_at', now)
redis.call('ZADD', qk(q, 'ready'), ready_score(id), id)
redis.call('PUBLISH', P .. ':wake', q)
return {'ok', q}
"#,
    )
});

static DISCARD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, id
local id = ARGV[2]
local f = redis.call('HMGET', jk(id), 'state', 'queue')
if not f[1] then return {'missing', ''} end
if f[1] == 'active' then return {'wrong', f[1]} end
local q = f[2]
for _, set in ipairs({'ready', 'delayed', 'retrying', 'completed', 'dead', 'cancelled'}) do redis.call('ZREM', qk(q, set), id) end
unhold(q, id)
redis.call('DEL', jk(id), jk(id) .. ':attempts')
return {'ok', q}
"#,
    )
});

static PURGE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, queue, state set, before (ms, exclusive), at most (≤ 10000). Oldest first.
local q, set = ARGV[2], ARGV[3]
local ids = redis.call('ZRANGEBYSCORE', qk(q, set), '-inf', '(' .. ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do
  redis.call('ZREM', qk(q, set), id)
  redis.call('DEL', jk(id), jk(id) .. ':attempts')
end
return #ids
"#,
    )
});

static TRIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
-- ARGV: P, queue, state set, keep. Deletes the oldest beyond `keep`, at most 10000 a call.
local q, set, keep = ARGV[2], ARGV[3], tonumber(ARGV[4])
local excess = redis.call('ZCARD', qk(q, set)) - keep
if excess <= 0 then return 0 end
local ids = redis.call('ZRANGE', qk(q, set), 0, math.min(excess, 10000) - 1)
for _, id in ipairs(ids) do
  redis.call('ZREM', qk(q, set), id)
  redis.call('DEL', jk(id), jk(id) .. ':attempts')
end
return #ids
"#,
    )
});

/// How many members of a state's set one `ZRANGE` reads while listing (listing reads them all,
/// window by window, so dead-letter groups and retries by filter see every job).
const LIST_WINDOW: isize = 10_000;
/// Job hashes loaded per pipelined round trip while listing.
const LOAD_CHUNK: usize = 200;

pub struct RedisQueue {
    /// Made on first use and kept (it reconnects by itself): the server starts while Redis is
    /// down, and every call fails fast as `Backend` until it is reachable.
    conn: tokio::sync::OnceCell<ConnectionManager>,
    /// For the pub/sub connection that relays wake-ups (`P:wake`, payload: the queue).
    client: redis::Client,
    prefix: String,
    clock: Arc<dyn Clock>,
    /// Where `job.dead` events go (the outbox).
    db: Db,
    policies: HashMap<String, QueuePolicy>,
    default_policy: QueuePolicy,
    wakeups: super::Wakeups,
    metrics: Arc<super::metrics::Metrics>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
}

fn backend_err(e: impl std::fmt::Display) -> QueueError {
    QueueError::Backend(e.to_string())
}

/// Builds a job from its hash (as `HGETALL` returns it: field, value, field, value…).
fn job_from_flat(flat: Vec<String>) -> Result<Job> {
    let mut m: HashMap<String, String> = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        m.insert(k, v);
    }
    let get = |k: &str| m.get(k).filter(|v| !v.is_empty()).cloned();
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let json_of = |k: &str| get(k).and_then(|v| serde_json::from_str::<Value>(&v).ok());
    let id = get("id").ok_or(QueueError::NotFound)?;
    let state: JobState = get("state").unwrap_or_default().parse()?;
    // The hot paths write only what changed; the rest follows from the state (see the scripts).
    let finished_at = from_ms(m.get("finished_at"));
    let started_at = from_ms(m.get("started_at"));
    let held = state == JobState::Active;
    let ms_dur = |k: &str| Duration::from_millis(u64::try_from(num(k)).unwrap_or(0));
    Ok(Job {
        id: id
            .try_into()
            .map_err(|e: crate::ids::IdError| QueueError::Invalid(e.to_string()))?,
        queue: get("queue").unwrap_or_default(),
        kind: get("kind").unwrap_or_default(),
        payload: json_of("payload").unwrap_or(Value::Null),
        priority: i32::try_from(num("priority")).unwrap_or(0),
        state,
        run_at: from_ms(m.get("run_at")).unwrap_or_else(Utc::now),
        attempts: u32::try_from(num("attempts")).unwrap_or(0),
        max_attempts: u32::try_from(num("max_attempts")).unwrap_or(1),
        backoff: Backoff {
            base: ms_dur("backoff_base_ms"),
            cap: ms_dur("backoff_cap_ms"),
        },
        unique_key: get("unique_key"),
        correlation_id: get("correlation_id"),
        progress: if state == JobState::Completed {
            100
        } else {
            i32::try_from(num("progress")).unwrap_or(0)
        },
        progress_message: get("progress_message"),
        result: json_of("result"),
        last_error: get("last_error"),
        error_fingerprint: get("error_fingerprint"),
        worker_id: get("worker_id").filter(|_| held),
        lease_until: from_ms(m.get("lease_until")).filter(|_| held),
        cancel_requested: num("cancel_requested") != 0,
        created_at: from_ms(m.get("created_at")).unwrap_or_else(Utc::now),
        updated_at: [from_ms(m.get("updated_at")), started_at, finished_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or_else(Utc::now),
        started_at,
        finished_at,
    })
}

impl RedisQueue {
    /// Connects (the connection reconnects by itself after outages).
    pub async fn connect(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
        db: Db,
        policies: HashMap<String, QueuePolicy>,
    ) -> Result<Self> {
        let q = Self::new(url, prefix, clock, db, policies)?;
        q.conn().await?;
        Ok(q)
    }

    /// The queue without connecting yet: the first call connects (and reports `Backend` while
    /// Redis cannot be reached), so a server starts while Redis is briefly down.
    pub fn new(
        url: &str,
        prefix: &str,
        clock: Arc<dyn Clock>,
        db: Db,
        policies: HashMap<String, QueuePolicy>,
    ) -> Result<Self> {
        let client = redis::Client::open(url).map_err(backend_err)?;
        Ok(Self {
            conn: tokio::sync::OnceCell::new(),
            client,
            prefix: prefix.into(),
            metrics: Arc::new(super::metrics::Metrics::new(clock.clone())),
            clock,
            db,
            policies,
            default_policy: QueuePolicy::default(),
            wakeups: super::Wakeups::default(),
        })
    }

    /// One round trip (start-up's check that Redis is reachable).
    pub async fn ping(&self) -> Result<()> {
        self.cmd::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    /// The shared connection, made on first use.
    async fn conn(&self) -> Result<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(CALL_TIMEOUT))
                    .set_number_of_retries(2);
                tokio::time::timeout(
                    CALL_TIMEOUT,
                    self.client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| QueueError::Backend("timed out connecting to Redis".into()))?
                .map_err(backend_err)
            })
            .await
            .cloned()
    }

    fn policy_of(&self, queue: &str) -> &QueuePolicy {
        self.policies.get(queue).unwrap_or(&self.default_policy)
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| QueueError::Backend("Redis did not answer in time".into()))?
            .map_err(backend_err)
    }

    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| QueueError::Backend("Redis did not answer in time".into()))?
            .map_err(backend_err)
    }

    fn key(&self, queue: &str, set: &str) -> String {
        format!("{}:q:{queue}:{set}", self.prefix)
    }

    /// Moves `job.dead` events from Redis (`P:outbox`) to the database's outbox, at most 200 a
    /// call. Each entry's event id is derived from the entry itself (its time and its number,
    /// unique under this prefix), so concurrent relays, or a relay repeated after a crash between
    /// the insert and the clean-up, insert the same id (`ON CONFLICT DO NOTHING`): the event is
    /// written once. Returns how many entries it moved.
    pub async fn relay_outbox(&self) -> Result<u64> {
        let outbox = format!("{}:outbox", self.prefix);
        let (_, flat): (String, Vec<String>) = self
            .cmd(
                redis::cmd("HSCAN")
                    .arg(&outbox)
                    .arg(0)
                    .arg("COUNT")
                    .arg(200),
            )
            .await?;
        let mut moved = 0;
        for pair in flat.chunks_exact(2) {
            self.relay_entry(&pair[0], &pair[1]).await?;
            moved += 1;
        }
        Ok(moved)
    }

    /// Moves outbox entry `n` (the one a dying job's script just wrote), if it is still there.
    async fn relay_one(&self, n: &str) -> Result<()> {
        let outbox = format!("{}:outbox", self.prefix);
        let entry: Option<String> = self.cmd(redis::cmd("HGET").arg(&outbox).arg(n)).await?;
        match entry {
            Some(entry) => self.relay_entry(n, &entry).await,
            None => Ok(()),
        }
    }

    /// Inserts entry `n` into the database's outbox under its derived id, then removes it.
    async fn relay_entry(&self, n: &str, entry: &str) -> Result<()> {
        let outbox = format!("{}:outbox", self.prefix);
        let prefix_bits = u128::from(
            u64::from_be_bytes(
                sha2::Sha256::digest(self.prefix.as_bytes())[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            ) >> 24,
        );

        let v: Value = serde_json::from_str(entry).unwrap_or(Value::Null);
        let job_id = v
            .get("job_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let at = v
            .get("at")
            .and_then(Value::as_i64)
            .and_then(|m| Utc.timestamp_millis_opt(m).single())
            .unwrap_or_else(|| self.clock.now());
        // 48 bits of time, then 40 bits of the prefix's hash and 40 of the entry's number.
        let number = u128::from(n.parse::<u64>().unwrap_or(0) & 0xFF_FFFF_FFFF);
        let event_id = format!(
            "{}_{}",
            crate::ids::EventId::PREFIX,
            ulid::Ulid::from_parts(
                u64::try_from(at.timestamp_millis()).unwrap_or(0),
                (prefix_bits << 40) | number,
            )
            .to_string()
            .to_ascii_lowercase()
        );
        let payload = json!({
            "job_id": job_id,
            "queue": v.get("queue"),
            "kind": v.get("kind"),
            "attempts": v.get("attempts"),
            "error": v.get("error"),
            "fingerprint": v.get("fingerprint"),
        });
        with_db!(&self.db, pool => {
            sqlx::query("INSERT INTO events (id, type, subject_id, payload, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
                .bind(&event_id)
                .bind(crate::events::types::JOB_DEAD)
                .bind(&job_id)
                .bind(sqlx::types::Json(payload))
                .bind(at)
                .execute(pool)
                .await?;
        });
        let _: i64 = self.cmd(redis::cmd("HDEL").arg(&outbox).arg(n)).await?;
        Ok(())
    }

    /// Enqueues a chunk of jobs in one atomic script call.
    async fn enqueue_chunk(&self, jobs: &[NewJob], now: DateTime<Utc>) -> Result<Vec<Enqueued>> {
        let mut inv = ENQUEUE.prepare_invoke();
        inv.arg(&self.prefix).arg(ms(now));
        for job in jobs {
            job.validate()?;
            let run_at = job.run_at.unwrap_or(now).max(now);
            inv.arg(&job.queue)
                .arg(JobId::new(now).as_str())
                .arg(&job.kind)
                .arg(
                    serde_json::to_string(&job.payload)
                        .map_err(|e| QueueError::Invalid(e.to_string()))?,
                )
                .arg(job.priority)
                .arg(ms(run_at))
                .arg(job.max_attempts)
                .arg(u64::try_from(job.backoff.base.as_millis()).unwrap_or(u64::MAX))
                .arg(u64::try_from(job.backoff.cap.as_millis()).unwrap_or(u64::MAX))
                .arg(job.unique_key.as_deref().unwrap_or(""))
                .arg(job.correlation_id.as_deref().unwrap_or(""))
                .arg(self.policy_of(&job.queue).max_waiting);
        }
        let flat: Vec<String> = self.run(inv).await?;
        if flat.first().map(String::as_str) == Some("full") {
            let queue = flat.get(1).cloned().unwrap_or_default();
            let limit = self.policy_of(&queue).max_waiting;
            return Err(QueueError::Full { queue, limit });
        }
        flat.chunks(2)
            .map(|pair| match pair {
                [what, id] if what == "ok" => {
                    Ok(Enqueued::Created(id.clone().try_into().map_err(
                        |e: crate::ids::IdError| QueueError::Invalid(e.to_string()),
                    )?))
                }
                [what, id] if what == "dup" => {
                    Ok(Enqueued::Duplicate(id.clone().try_into().map_err(
                        |e: crate::ids::IdError| QueueError::Invalid(e.to_string()),
                    )?))
                }
                other => Err(QueueError::Backend(format!(
                    "unexpected enqueue answer {other:?}"
                ))),
            })
            .collect()
    }
}

#[async_trait]
impl WorkQueue for RedisQueue {
    fn policy(&self, queue: &str) -> QueuePolicy {
        self.policy_of(queue).clone()
    }

    fn backend(&self) -> &'static str {
        "redis"
    }

    fn metrics(&self) -> &Arc<super::metrics::Metrics> {
        &self.metrics
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let out = self
            .enqueue_chunk(std::slice::from_ref(&job), self.clock.now())
            .await?
            .pop()
            .ok_or_else(|| QueueError::Backend("an empty enqueue answer".into()))?;
        if matches!(out, Enqueued::Created(_)) {
            self.metrics.enqueued(&job.queue, 1);
        }
        self.wakeups.wake(&job.queue);
        Ok(out)
    }

    async fn wait_for_work(&self, queue: &str, at_most: Duration) {
        self.wakeups.wait(queue, at_most).await;
    }

    async fn listen_for_work(&self, stop: tokio_util::sync::CancellationToken) {
        use futures_util::StreamExt as _;
        let channel = format!("{}:wake", self.prefix);
        let mut backoff = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let connected =
                tokio::time::timeout(CALL_TIMEOUT, self.client.get_async_pubsub()).await;
            match connected {
                Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                () = stop.cancelled() => return,
                                m = messages.next() => match m {
                                    Some(m) => {
                                        if let Ok(q) = m.get_payload::<String>() {
                                            self.wakeups.wake(&q);
                                        }
                                    }
                                    None => {
                                        tracing::warn!("Redis wake-up subscription lost; reconnecting");
                                        break;
                                    }
                                },
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "SUBSCRIBE failed; retrying"),
                },
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot open the Redis pub/sub connection; retrying")
                }
                Err(_) => {
                    tracing::warn!("timed out opening the Redis pub/sub connection; retrying")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn enqueue_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        for j in &jobs {
            j.validate()?;
        }
        let now = self.clock.now();
        // One script call per chunk; the connection is multiplexed, so chunks are pipelined.
        let futures = jobs
            .chunks(ENQUEUE_CHUNK)
            .map(|c| self.enqueue_chunk(c, now));
        let out: Result<Vec<Enqueued>> = futures_util::future::join_all(futures)
            .await
            .into_iter()
            .collect::<Result<Vec<Vec<Enqueued>>>>()
            .map(|v| v.into_iter().flatten().collect());
        if let Ok(out) = &out {
            super::count_created(&self.metrics, &jobs, out);
        }
        self.wakeups.wake_all(&jobs);
        out
    }

    async fn fetch(
        &self,
        queue: &str,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<Job>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut inv = FETCH.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(queue)
            .arg(worker)
            .arg(max)
            .arg(ms(lease_until))
            .arg(ms(now));
        let rows: Vec<Vec<String>> = self.run(inv).await?;
        rows.into_iter().map(job_from_flat).collect()
    }

    async fn heartbeat(
        &self,
        worker: &str,
        ids: &[JobId],
        lease: Duration,
    ) -> Result<Vec<(bool, bool)>> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut inv = HEARTBEAT.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(worker)
            .arg(ms(lease_until))
            .arg(ms(now));
        for id in ids {
            inv.arg(id.as_str());
        }
        let out: Vec<(i64, i64)> = self.run(inv).await?;
        Ok(out
            .into_iter()
            .map(|(held, cancel)| (held == 1, cancel == 1))
            .collect())
    }

    async fn progress(
        &self,
        id: &JobId,
        worker: &str,
        percent: i32,
        message: Option<&str>,
    ) -> Result<()> {
        let mut inv = PROGRESS.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(worker)
            .arg(ms(self.clock.now()))
            .arg(percent.clamp(0, 100))
            .arg(message.unwrap_or(""));
        let ok: i64 = self.run(inv).await?;
        if ok == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }

    async fn complete(&self, id: &JobId, worker: &str, result: Value) -> Result<()> {
        self.complete_many(worker, vec![(id.clone(), result)])
            .await?
            .pop()
            .unwrap_or(Err(QueueError::LeaseLost))
    }

    async fn complete_many(
        &self,
        worker: &str,
        done: Vec<(JobId, Value)>,
    ) -> Result<Vec<Result<()>>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = COMPLETE_MANY.prepare_invoke();
        inv.arg(&self.prefix).arg(worker).arg(ms(self.clock.now()));
        for (id, result) in &done {
            inv.arg(id.as_str()).arg(result.to_string());
        }
        let held: Vec<i64> = self.run(inv).await?;
        Ok(held
            .into_iter()
            .map(|h| {
                if h == 1 {
                    Ok(())
                } else {
                    Err(QueueError::LeaseLost)
                }
            })
            .collect())
    }

    async fn fail(
        &self,
        id: &JobId,
        worker: &str,
        failure: &JobFailure,
        jitter: f64,
    ) -> Result<FailOutcome> {
        let kind = self.get(id).await?.kind;
        let mut inv = FAIL.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(worker)
            .arg(ms(self.clock.now()))
            .arg(&failure.message)
            .arg(failure.fingerprint(&kind))
            .arg(if failure.retryable { "1" } else { "0" })
            .arg(jitter.clamp(0.0, 1.0));
        let out: redis::Value = self.run(inv).await?;
        let parts: Vec<String> = match out {
            redis::Value::Int(0) => return Err(QueueError::LeaseLost),
            other => redis::from_redis_value(other).map_err(backend_err)?,
        };
        match parts.first().map(String::as_str) {
            Some("retry") => {
                let at = parts
                    .get(1)
                    .and_then(|s| s.parse::<f64>().ok())
                    .map(|f| f as i64)
                    .and_then(|m| Utc.timestamp_millis_opt(m).single());
                Ok(FailOutcome::WillRetry {
                    at: at.unwrap_or_else(|| self.clock.now()),
                })
            }
            _ => {
                // The event is safe in Redis already; move this one now (a failure is repeated by
                // the periodic sweep in `recover_expired`).
                if let Some(n) = parts.get(2) {
                    if let Err(e) = self.relay_one(n).await {
                        tracing::warn!(error = %e, "moving a job.dead event to the outbox failed; will retry");
                    }
                }
                Ok(FailOutcome::Dead)
            }
        }
    }

    async fn release(&self, id: &JobId, worker: &str) -> Result<()> {
        let mut inv = RELEASE.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(worker)
            .arg(ms(self.clock.now()));
        // The script answers 0 when `worker` does not hold the job, else the job's queue.
        match self.run::<redis::Value>(inv).await? {
            redis::Value::Int(0) => Err(QueueError::LeaseLost),
            other => {
                let queue: String = redis::from_redis_value(other).map_err(backend_err)?;
                self.wakeups.wake(&queue);
                Ok(())
            }
        }
    }

    async fn recover_expired(&self) -> Result<u64> {
        let failure = JobFailure::lease_lost();
        let mut inv = RECOVER.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(ms(self.clock.now()))
            .arg(&failure.message)
            .arg(failure.fingerprint("*"));
        let out: Vec<String> = self.run(inv).await?;
        let mut n = 0;
        for item in out {
            if let Some(count) = item.strip_prefix('#') {
                n += count.parse::<u64>().unwrap_or(0);
            }
        }
        // Also the periodic pass that moves what an earlier relay left behind.
        if let Err(e) = self.relay_outbox().await {
            tracing::warn!(error = %e, "moving job.dead events to the outbox failed; will retry");
        }
        Ok(n)
    }

    async fn finish_cancelled(&self, id: &JobId, worker: &str) -> Result<()> {
        let mut inv = FINISH_CANCELLED.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(worker)
            .arg(ms(self.clock.now()));
        let ok: i64 = self.run(inv).await?;
        if ok == 1 {
            Ok(())
        } else {
            Err(QueueError::LeaseLost)
        }
    }
}

#[async_trait]
impl QueueAdmin for RedisQueue {
    async fn cancel(&self, id: &JobId) -> Result<CancelOutcome> {
        let mut inv = CANCEL.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(ms(self.clock.now()));
        let (what, state): (String, String) = self.run(inv).await?;
        match what.as_str() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested),
            "missing" => Err(QueueError::NotFound),
            _ => Err(QueueError::WrongState(state.parse()?)),
        }
    }

    async fn get(&self, id: &JobId) -> Result<Job> {
        let flat: Vec<String> = self
            .cmd(redis::cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix)))
            .await?;
        if flat.is_empty() {
            return Err(QueueError::NotFound);
        }
        job_from_flat(flat)
    }

    async fn counts(&self, queue: &str) -> Result<Counts> {
        let mut pipe = redis::pipe();
        let sets = [
            (JobState::Waiting, "ready"),
            (JobState::Delayed, "delayed"),
            (JobState::Retrying, "retrying"),
            (JobState::Active, "active"),
            (JobState::Completed, "completed"),
            (JobState::Dead, "dead"),
            (JobState::Cancelled, "cancelled"),
        ];
        for (_, set) in sets {
            pipe.cmd("ZCARD").arg(self.key(queue, set));
        }
        let mut conn = self.conn().await?;
        let n: Vec<u64> = tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut conn))
            .await
            .map_err(|_| QueueError::Backend("Redis did not answer in time".into()))?
            .map_err(backend_err)?;
        let mut c = Counts::default();
        for ((state, _), n) in sets.iter().zip(n) {
            c.add(*state, n);
        }
        Ok(c)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<()> {
        let key = self.key(queue, "paused");
        if paused {
            self.cmd::<()>(redis::cmd("SET").arg(key).arg(1)).await
        } else {
            self.cmd::<()>(redis::cmd("DEL").arg(key)).await
        }
    }

    async fn is_paused(&self, queue: &str) -> Result<bool> {
        let n: i64 = self
            .cmd(redis::cmd("EXISTS").arg(self.key(queue, "paused")))
            .await?;
        Ok(n == 1)
    }

    async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .cmd(redis::cmd("SMEMBERS").arg(format!("{}:queues", self.prefix)))
            .await?;
        names.sort();
        Ok(names)
    }

    async fn list(
        &self,
        filter: &JobFilter,
        limit: usize,
        before: Option<&JobId>,
    ) -> Result<Vec<Job>> {
        let set = match filter.state {
            JobState::Waiting => "ready",
            other => other.as_str(),
        };
        // Every member of the state's set (ids only), window by window; then newest id first,
        // after the cursor; then their hashes, chunk by chunk, until `limit` pass the filter.
        let key = self.key(&filter.queue, set);
        let mut ids: Vec<String> = Vec::new();
        let mut start: isize = 0;
        loop {
            let window: Vec<String> = self
                .cmd(
                    redis::cmd("ZRANGE")
                        .arg(&key)
                        .arg(start)
                        .arg(start + LIST_WINDOW - 1),
                )
                .await?;
            let got = window.len();
            ids.extend(window);
            if got < LIST_WINDOW as usize {
                break;
            }
            start += LIST_WINDOW;
        }
        if let Some(b) = before {
            ids.retain(|id| id.as_str() < b.as_str());
        }
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        let mut jobs = Vec::new();
        for chunk in ids.chunks(LOAD_CHUNK) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HGETALL").arg(format!("{}:job:{id}", self.prefix));
            }
            let mut conn = self.conn().await?;
            let rows: Vec<Vec<String>> =
                tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut conn))
                    .await
                    .map_err(|_| QueueError::Backend("Redis did not answer in time".into()))?
                    .map_err(backend_err)?;
            for row in rows.into_iter().filter(|r| !r.is_empty()) {
                let job = job_from_flat(row)?;
                if filter.matches(&job) {
                    jobs.push(job);
                    if jobs.len() >= limit {
                        return Ok(jobs);
                    }
                }
            }
        }
        Ok(jobs)
    }

    async fn attempts(&self, id: &JobId) -> Result<Vec<Attempt>> {
        // The successful attempt lives on the job itself (see COMPLETE_MANY).
        let (state, done_by, attempt, started, finished): (
            Option<String>,
            Option<String>,
            Option<u32>,
            Option<String>,
            Option<String>,
        ) = self
            .cmd(
                redis::cmd("HMGET")
                    .arg(format!("{}:job:{id}", self.prefix))
                    .arg("state")
                    .arg("done_by")
                    .arg("attempts")
                    .arg("started_at")
                    .arg("finished_at"),
            )
            .await?;
        let completed = match (state.as_deref(), done_by) {
            (Some("completed"), Some(w)) if !w.is_empty() => Some(Attempt {
                attempt: attempt.unwrap_or(0),
                worker_id: w,
                started_at: from_ms(started.as_ref()),
                finished_at: from_ms(finished.as_ref()),
                outcome: "completed".into(),
                error: None,
                fingerprint: None,
            }),
            _ => None,
        };
        let raw: Vec<String> = self
            .cmd(
                redis::cmd("LRANGE")
                    .arg(format!("{}:job:{id}:attempts", self.prefix))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r).ok())
            .map(|v| {
                let s = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                };
                let t = |k: &str| {
                    v.get(k)
                        .and_then(|x| {
                            x.as_i64()
                                .or_else(|| x.as_f64().map(|f| f as i64))
                                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                        })
                        .and_then(|m| Utc.timestamp_millis_opt(m).single())
                };
                Attempt {
                    attempt: v
                        .get("attempt")
                        .and_then(Value::as_f64)
                        .map_or(0, |a| a as u32),
                    worker_id: s("worker_id").unwrap_or_default(),
                    started_at: t("started_at"),
                    finished_at: t("finished_at"),
                    outcome: s("outcome").unwrap_or_default(),
                    error: s("error"),
                    fingerprint: s("fingerprint"),
                }
            })
            .chain(completed)
            .collect())
    }

    async fn retry(&self, id: &JobId) -> Result<()> {
        let mut inv = RETRY.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(ms(self.clock.now()));
        let (what, value): (String, String) = self.run(inv).await?;
        match what.as_str() {
            "ok" => {
                self.wakeups.wake(&value);
                Ok(())
            }
            "conflict" => Err(QueueError::Invalid(
                "another job with the same unique key is waiting or running".into(),
            )),
            "missing" => Err(QueueError::NotFound),
            _ => Err(QueueError::WrongState(value.parse()?)),
        }
    }

    async fn promote(&self, id: &JobId) -> Result<()> {
        let mut inv = PROMOTE.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(id.as_str())
            .arg(ms(self.clock.now()));
        let (what, value): (String, String) = self.run(inv).await?;
        match what.as_str() {
            "ok" => {
                self.wakeups.wake(&value);
                Ok(())
            }
            "missing" => Err(QueueError::NotFound),
            _ => Err(QueueError::WrongState(value.parse()?)),
        }
    }

    async fn discard(&self, id: &JobId) -> Result<()> {
        let mut inv = DISCARD.prepare_invoke();
        inv.arg(&self.prefix).arg(id.as_str());
        let (what, value): (String, String) = self.run(inv).await?;
        match what.as_str() {
            "ok" => Ok(()),
            "missing" => Err(QueueError::NotFound),
            _ => Err(QueueError::WrongState(value.parse()?)),
        }
    }

    async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroup>> {
        let dead = self
            .list(
                &JobFilter {
                    queue: queue.into(),
                    state: JobState::Dead,
                    kind: None,
                    fingerprint: None,
                    payload: None,
                    created_after: None,
                    created_before: None,
                },
                usize::MAX,
                None,
            )
            .await?;
        let mut groups: HashMap<String, DeadGroup> = HashMap::new();
        for j in dead {
            let fp = j.error_fingerprint.clone().unwrap_or_default();
            let g = groups.entry(fp.clone()).or_insert_with(|| DeadGroup {
                fingerprint: fp,
                kind: j.kind.clone(),
                count: 0,
                first_seen: j.updated_at,
                last_seen: j.updated_at,
                sample_error: j.last_error.clone().unwrap_or_default(),
            });
            g.count += 1;
            g.first_seen = g.first_seen.min(j.updated_at);
            g.last_seen = g.last_seen.max(j.updated_at);
        }
        let mut out: Vec<DeadGroup> = groups.into_values().collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
        Ok(out)
    }

    async fn purge(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
        at_most: u64,
    ) -> Result<u64> {
        if !state.is_finished() {
            return Err(QueueError::Invalid(format!(
                "only finished jobs are purged, not {state} ones"
            )));
        }
        let mut inv = PURGE.prepare_invoke();
        inv.arg(&self.prefix)
            .arg(queue)
            .arg(state.as_str())
            .arg(ms(before))
            .arg(at_most.clamp(1, 10_000));
        self.run(inv).await
    }

    async fn count_finished(
        &self,
        queue: &str,
        state: JobState,
        before: DateTime<Utc>,
    ) -> Result<u64> {
        let mut cmd = redis::cmd("ZCOUNT");
        cmd.arg(self.key(queue, state.as_str()))
            .arg("-inf")
            .arg(format!("({}", ms(before)));
        let mut conn = self.conn().await?;
        tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| QueueError::Backend("Redis did not answer in time".into()))?
            .map_err(backend_err)
    }

    async fn enqueue_audited(&self, job: NewJob, audit: Audited<'_>) -> Result<JobId> {
        job.validate_audited()?;
        // Redis and the audit log's database share no transaction: the entry goes first, with
        // the request id the job carries, so a job never runs unaudited.
        crate::with_db!(audit.db, pool => crate::record_on!(pool, audit.at, audit.actor, audit.entry))?;
        match self.enqueue(job).await? {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => Ok(id),
        }
    }

    async fn trim(&self, queue: &str, state: JobState, keep: u64) -> Result<u64> {
        if !state.is_finished() {
            return Err(QueueError::Invalid(format!(
                "only finished jobs are trimmed, not {state} ones"
            )));
        }
        let mut total = 0;
        while total < 100_000 {
            let mut inv = TRIM.prepare_invoke();
            inv.arg(&self.prefix)
                .arg(queue)
                .arg(state.as_str())
                .arg(keep);
            let n: u64 = self.run(inv).await?;
            total += n;
            if n < 10_000 {
                break;
            }
        }
        Ok(total)
    }
}
