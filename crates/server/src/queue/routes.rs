//! `/api/ops/queues…` and `/api/ops/jobs…`: what operators see and do with the job queues.
//! Admins and operators only; every action that changes something is audited.

use super::bulk::{self, BulkOp};
use super::metrics::{self, Histogram, MinuteStats};
use super::{Attempt, DeadGroup, Job, JobFilter, JobState, QueueError};
use super::{Audited, PayloadMatch};
use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{ClientIp, Json, Path, Query};
use crate::ids::JobId;
use crate::paging::{page, PageQuery};
use crate::state::AppState;
use airwave_api::{
    AttemptOut, BulkOut, DeadGroupOut, JobDetailOut, JobOut, JobStateOut, Page, PercentilesOut,
    Problem, PurgeIn, QueueMetricsOut, QueueMinuteOut, QueueOut, QueueRatesOut, RetryDeadIn,
    RetryJobsIn, Role,
};
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(list_queues))
        .routes(utoipa_axum::routes!(list_jobs))
        .routes(utoipa_axum::routes!(retry_jobs))
        .routes(utoipa_axum::routes!(queue_metrics))
        .routes(utoipa_axum::routes!(get_job, discard_job))
        .routes(utoipa_axum::routes!(retry_job))
        .routes(utoipa_axum::routes!(promote_job))
        .routes(utoipa_axum::routes!(cancel_job))
        .routes(utoipa_axum::routes!(dead_groups))
        .routes(utoipa_axum::routes!(retry_dead))
        .routes(utoipa_axum::routes!(pause_queue))
        .routes(utoipa_axum::routes!(resume_queue))
        .routes(utoipa_axum::routes!(purge_completed))
}

const OPERATORS: &[Role] = &[Role::Admin, Role::Operator];
/// The oldest age a purge takes (ten years): beyond it the time arithmetic would overflow.
const MAX_AGE_HOURS: u32 = 87_600;

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::NotFound => Error::not_found("job"),
            QueueError::WrongState(s) => Error::conflict(
                "job_state",
                format!("the job is {s}, which does not allow this"),
            ),
            QueueError::LeaseLost => {
                Error::conflict("job_state", "the job changed hands; reload it")
            }
            QueueError::Invalid(d) => Error::invalid("validation_failed", d),
            QueueError::Full { queue, limit } => Error::Unavailable {
                code: "queue_full",
                detail: format!("queue `{queue}` is full ({limit} jobs waiting); try again later"),
                retry_after: std::time::Duration::from_secs(30),
            },
            QueueError::Backend(d) => {
                tracing::warn!(error = %d, "queue backend unavailable");
                Error::Unavailable {
                    code: "queue_unavailable",
                    detail: "the job queue is unavailable; try again shortly".into(),
                    retry_after: std::time::Duration::from_secs(5),
                }
            }
            QueueError::Database(e) => Error::Database(e),
            QueueError::Stopped => Error::Unavailable {
                code: "shutting_down",
                detail: "the server is stopping; try again".into(),
                retry_after: std::time::Duration::from_secs(5),
            },
        }
    }
}

fn state_out(s: JobState) -> JobStateOut {
    match s {
        JobState::Waiting => JobStateOut::Waiting,
        JobState::Delayed => JobStateOut::Delayed,
        JobState::Active => JobStateOut::Active,
        JobState::Completed => JobStateOut::Completed,
        JobState::Retrying => JobStateOut::Retrying,
        JobState::Dead => JobStateOut::Dead,
        JobState::Cancelled => JobStateOut::Cancelled,
    }
}

fn state_in(s: JobStateOut) -> JobState {
    match s {
        JobStateOut::Waiting => JobState::Waiting,
        JobStateOut::Delayed => JobState::Delayed,
        JobStateOut::Active => JobState::Active,
        JobStateOut::Completed => JobState::Completed,
        JobStateOut::Retrying => JobState::Retrying,
        JobStateOut::Dead => JobState::Dead,
        JobStateOut::Cancelled => JobState::Cancelled,
    }
}

pub fn job_out(j: Job) -> JobOut {
    JobOut {
        id: j.id.to_string(),
        queue: j.queue,
        kind: j.kind,
        payload: j.payload,
        priority: j.priority,
        state: state_out(j.state),
        run_at: j.run_at,
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        unique_key: j.unique_key,
        correlation_id: j.correlation_id,
        progress: j.progress,
        progress_message: j.progress_message,
        result: j.result,
        last_error: j.last_error,
        error_fingerprint: j.error_fingerprint,
        worker_id: j.worker_id,
        lease_until: j.lease_until,
        cancel_requested: j.cancel_requested,
        created_at: j.created_at,
        updated_at: j.updated_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
    }
}

fn attempt_out(a: Attempt) -> AttemptOut {
    AttemptOut {
        attempt: a.attempt,
        worker_id: a.worker_id,
        started_at: a.started_at,
        finished_at: a.finished_at,
        outcome: a.outcome,
        error: a.error,
        fingerprint: a.fingerprint,
    }
}

fn group_out(g: DeadGroup) -> DeadGroupOut {
    DeadGroupOut {
        fingerprint: g.fingerprint,
        kind: g.kind,
        count: g.count,
        first_seen: g.first_seen,
        last_seen: g.last_seen,
        sample_error: g.sample_error,
    }
}

fn check_queue(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_id",
            format!(
                "`{}` is not a queue name",
                name.chars().take(64).collect::<String>()
            ),
        ))
    }
}

async fn queue_out(s: &AppState, name: &str) -> Result<QueueOut> {
    let c = s.queue.counts(name).await?;
    let now = s.clock.now();
    let recent = metrics::read(&s.db, name, now - chrono::Duration::minutes(4), now).await?;
    let mut sum = MinuteStats::default();
    for (_, m) in &recent {
        sum.merge(m);
    }
    let per_min = |n: u64| n as f64 / 5.0;
    Ok(QueueOut {
        rates: QueueRatesOut {
            enqueued_per_min: per_min(sum.enqueued),
            completed_per_min: per_min(sum.completed),
            failed_per_min: per_min(sum.failed),
        },
        name: name.into(),
        paused: s.queue.is_paused(name).await?,
        counts: c.into(),
    })
}

async fn audit_action(
    s: &AppState,
    who: &Principal,
    ip: ClientIp,
    action: &str,
    target_type: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<()> {
    audit::record(
        &s.db,
        s.clock.as_ref(),
        &who.actor(ip.0),
        Entry {
            action,
            target_type: Some(target_type),
            target_id: Some(target),
            detail,
        },
    )
    .await?;
    Ok(())
}

/// Every queue with its job counts by state.
#[utoipa::path(get, path = "/api/ops/queues", tag = "operations", responses((status = 200, body = Vec<QueueOut>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_queues(
    State(s): State<AppState>,
    who: Principal,
) -> Result<axum::Json<Vec<QueueOut>>> {
    who.require(OPERATORS)?;
    let names = super::all_queue_names(s.queue.as_ref()).await?;
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        out.push(queue_out(&s, &n).await?);
    }
    Ok(axum::Json(out))
}

/// `GET /api/ops/queues/{queue}/jobs` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// The state to list (default `waiting`).
    pub state: Option<JobStateOut>,
    pub kind: Option<String>,
    /// Only jobs whose last error has this fingerprint.
    pub fingerprint: Option<String>,
    /// Only jobs whose payload has this value at this path: `field.path=value`, e.g.
    /// `execution_id=exe_…` (strings as they are, numbers and booleans as JSON text).
    pub payload: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn payload_match(p: Option<&str>) -> Result<Option<PayloadMatch>> {
    p.map(|p| {
        p.parse::<PayloadMatch>()
            .map_err(|e| Error::invalid("invalid_filter", format!("payload: {e}")))
    })
    .transpose()
}

fn time_range(after: Option<DateTime<Utc>>, before: Option<DateTime<Utc>>) -> Result<()> {
    match (after, before) {
        (Some(a), Some(b)) if a >= b => Err(Error::invalid(
            "invalid_filter",
            "created_after must be before created_before",
        )),
        _ => Ok(()),
    }
}

/// A queue's jobs in one state, newest first.
#[utoipa::path(get, path = "/api/ops/queues/{queue}/jobs", tag = "operations", params(("queue" = String, Path), JobQuery),
    responses((status = 200, body = Page<JobOut>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn list_jobs(
    State(s): State<AppState>,
    who: Principal,
    Path(queue): Path<String>,
    Query(q): Query<JobQuery>,
) -> Result<axum::Json<Page<JobOut>>> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let (limit, cursor) = (paging.limit()?, paging.cursor::<JobId>()?);
    time_range(q.created_after, q.created_before)?;
    let filter = JobFilter {
        kind: q.kind,
        fingerprint: q.fingerprint,
        payload: payload_match(q.payload.as_deref())?,
        created_after: q.created_after,
        created_before: q.created_before,
        ..JobFilter::new(&queue, state_in(q.state.unwrap_or(JobStateOut::Waiting)))
    };
    let jobs = s
        .queue
        .list(
            &filter,
            usize::try_from(limit + 1).unwrap_or(usize::MAX),
            cursor.as_ref(),
        )
        .await?;
    Ok(axum::Json(page(
        jobs.into_iter().map(job_out).collect(),
        limit,
        |j| j.id.clone(),
    )))
}

/// A job with its payload, attempts and errors.
#[utoipa::path(get, path = "/api/ops/jobs/{id}", tag = "operations", params(("id" = String, Path, description = "job_… id")),
    responses((status = 200, body = JobDetailOut), (status = 404, body = Problem)), security(("bearer" = [])))]
pub async fn get_job(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobDetailOut>> {
    who.require(OPERATORS)?;
    let job = s.queue.get(&id).await?;
    let attempts = s.queue.attempts(&id).await?;
    Ok(axum::Json(JobDetailOut {
        job: job_out(job),
        attempts: attempts.into_iter().map(attempt_out).collect(),
    }))
}

/// Run a dead or cancelled job again (attempts start over).
#[utoipa::path(post, path = "/api/ops/jobs/{id}/retry", tag = "operations", params(("id" = String, Path, description = "job_… id")),
    responses((status = 200, body = JobOut), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn retry_job(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobOut>> {
    who.require(OPERATORS)?;
    s.queue.retry(&id).await?;
    audit_action(
        &s,
        &who,
        ip,
        "queue.job_retry",
        "job",
        id.as_str(),
        json!({}),
    )
    .await?;
    Ok(axum::Json(job_out(s.queue.get(&id).await?)))
}

/// Run a delayed or retrying job now.
#[utoipa::path(post, path = "/api/ops/jobs/{id}/promote", tag = "operations", params(("id" = String, Path, description = "job_… id")),
    responses((status = 200, body = JobOut), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn promote_job(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobOut>> {
    who.require(OPERATORS)?;
    s.queue.promote(&id).await?;
    audit_action(
        &s,
        &who,
        ip,
        "queue.job_promote",
        "job",
        id.as_str(),
        json!({}),
    )
    .await?;
    Ok(axum::Json(job_out(s.queue.get(&id).await?)))
}

/// Cancel a waiting job, or ask a running one to stop.
#[utoipa::path(post, path = "/api/ops/jobs/{id}/cancel", tag = "operations", params(("id" = String, Path, description = "job_… id")),
    responses((status = 200, body = JobOut), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn cancel_job(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<JobId>,
) -> Result<axum::Json<JobOut>> {
    who.require(OPERATORS)?;
    let outcome = s.queue.cancel(&id).await?;
    audit_action(
        &s,
        &who,
        ip,
        "queue.job_cancel",
        "job",
        id.as_str(),
        json!({"outcome": format!("{outcome:?}").to_lowercase()}),
    )
    .await?;
    Ok(axum::Json(job_out(s.queue.get(&id).await?)))
}

/// Delete a job that is not running.
#[utoipa::path(delete, path = "/api/ops/jobs/{id}", tag = "operations", params(("id" = String, Path, description = "job_… id")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
pub async fn discard_job(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(id): Path<JobId>,
) -> Result<StatusCode> {
    who.require(OPERATORS)?;
    s.queue.discard(&id).await?;
    audit_action(
        &s,
        &who,
        ip,
        "queue.job_discard",
        "job",
        id.as_str(),
        json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The dead-letter queue grouped by error fingerprint: what is failing, how often, since when.
#[utoipa::path(get, path = "/api/ops/queues/{queue}/dead", tag = "operations", params(("queue" = String, Path)),
    responses((status = 200, body = Vec<DeadGroupOut>), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn dead_groups(
    State(s): State<AppState>,
    who: Principal,
    Path(queue): Path<String>,
) -> Result<axum::Json<Vec<DeadGroupOut>>> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    Ok(axum::Json(
        s.queue
            .dead_groups(&queue)
            .await?
            .into_iter()
            .map(group_out)
            .collect(),
    ))
}

/// Retry the dead jobs of a queue, all or one fingerprint's. `dry_run` only counts them;
/// otherwise a bulk job does it (202, `Location` of the job, whose progress shows how far it got).
#[utoipa::path(post, path = "/api/ops/queues/{queue}/dead/retry", tag = "operations", params(("queue" = String, Path)), request_body = RetryDeadIn,
    responses((status = 200, description = "dry run", body = BulkOut), (status = 202, description = "started", body = BulkOut),
        (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn retry_dead(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(queue): Path<String>,
    Json(body): Json<RetryDeadIn>,
) -> Result<(StatusCode, HeaderMap, axum::Json<BulkOut>)> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    let op = BulkOp::retry_dead(&queue, body.fingerprint.as_deref());
    start_bulk(&s, &who, ip, op, body.dry_run).await
}

/// Counts what `op` matches; unless `dry_run`, enqueues its job with the audit entry.
async fn start_bulk(
    s: &AppState,
    who: &Principal,
    ip: ClientIp,
    op: BulkOp,
    dry_run: bool,
) -> Result<(StatusCode, HeaderMap, axum::Json<BulkOut>)> {
    let count = op.count(s.queue.as_ref()).await?;
    let truncated = matches!(op, BulkOp::Retry { .. }) && count >= bulk::RETRY_MAX as u64;
    if dry_run {
        let out = BulkOut {
            count,
            dry_run,
            truncated,
            job_id: None,
        };
        return Ok((StatusCode::OK, HeaderMap::new(), axum::Json(out)));
    }
    let operation = crate::ids::OperationId::new(s.clock.now());
    let job = op.job(&s.queue.policy(bulk::QUEUE), operation.as_str());
    let detail = json!({"op": &op, "operation": operation.as_str(), "matched": count});
    let id = s
        .queue
        .enqueue_audited(
            job,
            Audited {
                db: &s.db,
                at: s.clock.now(),
                actor: &who.actor(ip.0),
                entry: Entry {
                    action: op.action(),
                    target_type: Some("queue"),
                    target_id: Some(op.queue()),
                    detail,
                },
            },
        )
        .await?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/ops/jobs/{id}")) {
        headers.insert(LOCATION, v);
    }
    let out = BulkOut {
        count,
        dry_run,
        truncated,
        job_id: Some(id.to_string()),
    };
    Ok((StatusCode::ACCEPTED, headers, axum::Json(out)))
}

async fn set_paused(
    s: &AppState,
    who: &Principal,
    ip: ClientIp,
    queue: &str,
    paused: bool,
) -> Result<QueueOut> {
    who.require(OPERATORS)?;
    check_queue(queue)?;
    s.queue.set_paused(queue, paused).await?;
    let action = if paused {
        "queue.pause"
    } else {
        "queue.resume"
    };
    audit_action(s, who, ip, action, "queue", queue, json!({})).await?;
    queue_out(s, queue).await
}

/// Stop handing out a queue's jobs.
#[utoipa::path(post, path = "/api/ops/queues/{queue}/pause", tag = "operations", params(("queue" = String, Path)),
    responses((status = 200, body = QueueOut), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn pause_queue(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(queue): Path<String>,
) -> Result<axum::Json<QueueOut>> {
    Ok(axum::Json(set_paused(&s, &who, ip, &queue, true).await?))
}

/// Hand out a paused queue's jobs again.
#[utoipa::path(post, path = "/api/ops/queues/{queue}/resume", tag = "operations", params(("queue" = String, Path)),
    responses((status = 200, body = QueueOut), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn resume_queue(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(queue): Path<String>,
) -> Result<axum::Json<QueueOut>> {
    Ok(axum::Json(set_paused(&s, &who, ip, &queue, false).await?))
}

/// Delete completed jobs older than the given age. `dry_run` only counts them; otherwise a bulk
/// job does it (202, `Location` of the job).
#[utoipa::path(post, path = "/api/ops/queues/{queue}/purge", tag = "operations", params(("queue" = String, Path)), request_body = PurgeIn,
    responses((status = 200, description = "dry run", body = BulkOut), (status = 202, description = "started", body = BulkOut),
        (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn purge_completed(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(queue): Path<String>,
    Json(body): Json<PurgeIn>,
) -> Result<(StatusCode, HeaderMap, axum::Json<BulkOut>)> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    if body.older_than_hours > MAX_AGE_HOURS {
        return Err(Error::invalid(
            "validation_failed",
            format!("`older_than_hours` must be at most {MAX_AGE_HOURS} (ten years)"),
        ));
    }
    let op = BulkOp::Purge {
        queue,
        state: JobState::Completed,
        before: s.clock.now() - chrono::Duration::hours(i64::from(body.older_than_hours)),
    };
    start_bulk(&s, &who, ip, op, body.dry_run).await
}

/// Retry every dead (or cancelled) job of a queue that matches a filter: kind, error fingerprint,
/// payload field, creation time. `dry_run` counts them without touching anything; otherwise a
/// bulk job retries them (202, `Location` of the job). At most 100 000 jobs an operation; jobs
/// that changed state meanwhile are skipped.
#[utoipa::path(post, path = "/api/ops/queues/{queue}/jobs/retry", tag = "operations", params(("queue" = String, Path)), request_body = RetryJobsIn,
    responses((status = 200, description = "dry run", body = BulkOut), (status = 202, description = "started", body = BulkOut),
        (status = 400, body = Problem), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn retry_jobs(
    State(s): State<AppState>,
    who: Principal,
    ip: ClientIp,
    Path(queue): Path<String>,
    Json(body): Json<RetryJobsIn>,
) -> Result<(StatusCode, HeaderMap, axum::Json<BulkOut>)> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    let state = state_in(body.state.unwrap_or(JobStateOut::Dead));
    if !matches!(state, JobState::Dead | JobState::Cancelled) {
        return Err(Error::invalid(
            "invalid_filter",
            "only dead or cancelled jobs can be retried",
        ));
    }
    time_range(body.created_after, body.created_before)?;
    payload_match(body.payload.as_deref())?;
    let op = BulkOp::Retry {
        queue,
        state,
        kind: body.kind,
        fingerprint: body.fingerprint,
        payload: body.payload,
        created_after: body.created_after,
        created_before: body.created_before,
    };
    start_bulk(&s, &who, ip, op, body.dry_run).await
}

/// `GET /api/ops/queues/{queue}/metrics` range.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// Start (RFC 3339; default an hour before `until`). At most 48 hours before `until`.
    pub since: Option<DateTime<Utc>>,
    /// End (RFC 3339; default now).
    pub until: Option<DateTime<Utc>>,
}

fn percentiles(h: &Histogram) -> PercentilesOut {
    PercentilesOut {
        p50: h.percentile(50.0),
        p95: h.percentile(95.0),
        p99: h.percentile(99.0),
    }
}

/// A queue's throughput, failures and wait/run time percentiles per minute (kept 48 hours).
#[utoipa::path(get, path = "/api/ops/queues/{queue}/metrics", tag = "operations", params(("queue" = String, Path), MetricsQuery),
    responses((status = 200, body = QueueMetricsOut), (status = 400, body = Problem), (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn queue_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(queue): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Result<axum::Json<QueueMetricsOut>> {
    who.require(OPERATORS)?;
    check_queue(&queue)?;
    let until = q.until.unwrap_or_else(|| s.clock.now());
    let since = q.since.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(Error::invalid(
            "invalid_range",
            "since must be before until",
        ));
    }
    if until - since > metrics::KEEP {
        return Err(Error::invalid(
            "invalid_range",
            "the range can be at most 48 hours (metrics are kept that long)",
        ));
    }
    let minutes = metrics::read(&s.db, &queue, since, until).await?;
    let mut total = MinuteStats::default();
    let minutes = minutes
        .into_iter()
        .map(|(minute, m)| {
            total.merge(&m);
            QueueMinuteOut {
                minute,
                enqueued: m.enqueued,
                completed: m.completed,
                failed: m.failed,
                dead: m.dead,
                wait_ms: percentiles(&m.wait),
                run_ms: percentiles(&m.run),
            }
        })
        .collect();
    Ok(axum::Json(QueueMetricsOut {
        queue,
        since,
        until,
        minutes,
        enqueued: total.enqueued,
        completed: total.completed,
        failed: total.failed,
        dead: total.dead,
        wait_ms: percentiles(&total.wait),
        run_ms: percentiles(&total.run),
    }))
}
