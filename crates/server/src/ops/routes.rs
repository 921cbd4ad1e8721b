//! `GET /api/ops/stream` (Server-Sent Events) and `GET /api/ops/health/history`.
//! Admins, operators and support staff.

use super::checker::status_of;
use super::log::{self, LoggedEvent};
use crate::auth::Principal;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::http::extract::Query;
use crate::state::AppState;
use crate::with_db;
use airwave_api::{
    ops_event, HealthHistoryOut, HealthPointOut, HealthStatus, Problem, Role, StreamGapEvent,
};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// This feature's routes with their OpenAPI descriptions.
pub fn routes() -> crate::feature::Routes {
    crate::feature::Routes::new()
        .routes(utoipa_axum::routes!(stream))
        .routes(utoipa_axum::routes!(history))
}

const WATCHERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];
/// Events read from the log per query.
const PAGE: i64 = 200;
/// How often a stream looks for events other instances appended.
const POLL: Duration = Duration::from_millis(500);

/// `GET /api/ops/stream` resume point (the `Last-Event-ID` header wins).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Resume after this event id (for clients that cannot set `Last-Event-ID`).
    #[param(minimum = 0)]
    pub last_event_id: Option<i64>,
}

struct Reader {
    db: Db,
    appended: Arc<tokio::sync::Notify>,
    last: i64,
    buffer: VecDeque<LoggedEvent>,
    gap: Option<Event>,
}

impl Reader {
    /// The next event; waits (without buffering anything) until there is one.
    async fn next(&mut self) -> Event {
        if let Some(gap) = self.gap.take() {
            return gap;
        }
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.last = e.id;
                return Event::default()
                    .id(e.id.to_string())
                    .event(e.kind)
                    .data(e.data);
            }
            // Register for this instance's appends before reading, so none slips between.
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            match log::after(&self.db, self.last, PAGE).await {
                Ok(rows) if !rows.is_empty() => self.buffer.extend(rows),
                Ok(_) => {
                    tokio::select! {
                        () = appended => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the ops log failed; retrying");
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// The live operations stream: `health.changed`, `queue.stats` (and, with later features, alerts,
/// deliveries, backups). Each event carries an `id`; reconnect with `Last-Event-ID` to receive
/// everything after it — from any instance, after a restart. Without one the stream starts with
/// the next event. A resume point older than the replay log gets a `stream.gap` event first.
/// Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/api/ops/stream", tag = "operations", params(StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events"),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn stream(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    who.require(WATCHERS)?;
    let from_header = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    Error::invalid(
                        "invalid_last_event_id",
                        "Last-Event-ID must be an event id (a whole number)",
                    )
                })?,
        ),
    };
    let resume = from_header.or(q.last_event_id);
    if resume.is_some_and(|r| r < 0) {
        return Err(Error::invalid(
            "invalid_last_event_id",
            "last_event_id must not be negative",
        ));
    }
    let (oldest, newest) = log::bounds(&s.db).await?;
    let mut gap = None;
    let last = match resume {
        // Live only: from the newest event on.
        None => newest.unwrap_or(0),
        Some(r) => {
            if let Some(oldest) = oldest.filter(|o| r + 1 < *o) {
                let data = StreamGapEvent {
                    requested: r,
                    oldest: Some(oldest),
                };
                gap = Some(
                    Event::default()
                        .id((oldest - 1).to_string())
                        .event(ops_event::STREAM_GAP)
                        .data(serde_json::to_string(&data).unwrap_or_default()),
                );
                oldest - 1
            } else {
                r
            }
        }
    };
    let guard = s.streams.admit(who.user_id.as_str())?;
    let reader = Reader {
        db: s.db.clone(),
        appended: s.ops_appended.clone(),
        last,
        buffer: VecDeque::new(),
        gap,
    };
    let events = futures_util::stream::unfold(reader, |mut r| async move {
        let e = r.next().await;
        Some((Ok(e), r))
    });
    // The stream ends when its credentials no longer may watch, or when the server stops; its
    // place is given back when it is dropped.
    let bearer = bearer_of(&headers).unwrap_or_default().to_owned();
    let ended = still_allowed(s.clone(), bearer, guard);
    let events = futures_util::StreamExt::take_until(events, Box::pin(ended));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The bearer token of a request.
fn bearer_of(headers: &HeaderMap) -> Option<&str> {
    let h = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    h.strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .map(str::trim)
}

/// Resolves when the stream must end: its token no longer authenticates as a watcher (checked
/// every `stream_reauth` and whenever credentials change here), or the server is stopping.
async fn still_allowed(s: AppState, bearer: String, _place: super::streams::StreamGuard) {
    let closing = s.streams.closing();
    loop {
        tokio::select! {
            () = closing.cancelled() => return,
            () = tokio::time::sleep(s.config.ops.stream_reauth) => {}
            () = s.streams.changed() => {}
        }
        match crate::auth::authenticate(&s, &bearer).await {
            Ok(who) if who.require(WATCHERS).is_ok() => {}
            Ok(_) | Err(Error::Unauthenticated(_) | Error::Forbidden(_)) => {
                tracing::info!("a stream's credentials no longer allow it; ending it");
                return;
            }
            // The database is briefly away: keep streaming, check again next time.
            Err(e) => tracing::warn!(error = %e, "could not re-check a stream's credentials"),
        }
    }
}

/// `GET /api/ops/health/history` range.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// A check key as in `/api/health` (`database:responseTime`, `queue:responseTime`).
    pub component: String,
    /// Start (RFC 3339; default an hour before `until`).
    pub since: Option<DateTime<Utc>>,
    /// End (RFC 3339; default now).
    pub until: Option<DateTime<Utc>>,
    /// Most points to return (1–2000, default 300); checks are bucketed to fit.
    #[param(minimum = 1, maximum = 2000)]
    pub points: Option<u32>,
}

#[derive(sqlx::FromRow)]
struct Sample {
    at: DateTime<Utc>,
    status: String,
    observed_value: Option<f64>,
    observed_unit: Option<String>,
}

fn worst(a: HealthStatus, b: HealthStatus) -> HealthStatus {
    let rank = |s| match s {
        HealthStatus::Pass => 0,
        HealthStatus::Warn => 1,
        HealthStatus::Fail => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Buckets samples into at most `points` points over `[since, until)`: the worst status and the
/// highest value of each bucket, at the bucket's first sample.
pub fn downsample(
    samples: &[(DateTime<Utc>, HealthStatus, Option<f64>)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    points: usize,
) -> Vec<HealthPointOut> {
    if samples.len() <= points {
        return samples
            .iter()
            .map(|(at, status, v)| HealthPointOut {
                at: *at,
                status: *status,
                observed_value: *v,
                samples: 1,
            })
            .collect();
    }
    let span = (until - since).num_milliseconds().max(1) as f64;
    let mut out: Vec<HealthPointOut> = Vec::with_capacity(points);
    let mut current: Option<usize> = None;
    for (at, status, v) in samples {
        let bucket = (((*at - since).num_milliseconds().max(0) as f64 / span) * points as f64)
            .floor()
            .min(points as f64 - 1.0) as usize;
        if current == Some(bucket) {
            let p = out.last_mut().expect("a point for the current bucket");
            p.status = worst(p.status, *status);
            p.observed_value = match (p.observed_value, *v) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            p.samples += 1;
        } else {
            current = Some(bucket);
            out.push(HealthPointOut {
                at: *at,
                status: *status,
                observed_value: *v,
                samples: 1,
            });
        }
    }
    out
}

/// A component's recorded checks over a time range (for latency, status and uptime charts).
#[utoipa::path(get, path = "/api/ops/health/history", tag = "operations", params(HistoryQuery),
    responses((status = 200, body = HealthHistoryOut), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 403, body = Problem)), security(("bearer" = [])))]
pub async fn history(
    State(s): State<AppState>,
    who: Principal,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<HealthHistoryOut>> {
    who.require(WATCHERS)?;
    let until = q.until.unwrap_or_else(|| s.clock.now());
    let since = q.since.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(Error::invalid(
            "invalid_range",
            "since must be before until",
        ));
    }
    if until - since > s.config.ops.history_keep {
        return Err(Error::invalid(
            "invalid_range",
            format!(
                "the range can be at most {} days (history is kept that long)",
                s.config.ops.history_keep.num_days()
            ),
        ));
    }
    let points = q.points.unwrap_or(300);
    if !(1..=2000).contains(&points) {
        return Err(Error::invalid(
            "invalid_range",
            "points must be between 1 and 2000",
        ));
    }
    let known: Option<i32> = with_db!(&s.db, pool => {
        sqlx::query_scalar("SELECT 1 FROM health_samples WHERE component = $1 LIMIT 1")
            .bind(&q.component)
            .fetch_optional(pool)
            .await?
    });
    if known.is_none() {
        return Err(Error::not_found("health component"));
    }
    let rows: Vec<Sample> = with_db!(&s.db, pool => {
        sqlx::query_as("SELECT at, status, observed_value, observed_unit FROM health_samples WHERE component = $1 AND at >= $2 AND at < $3 ORDER BY at")
            .bind(&q.component)
            .bind(since)
            .bind(until)
            .fetch_all(pool)
            .await?
    });
    let unit = rows.iter().rev().find_map(|r| r.observed_unit.clone());
    let samples: Vec<(DateTime<Utc>, HealthStatus, Option<f64>)> = rows
        .iter()
        .filter_map(|r| status_of(&r.status).map(|st| (r.at, st, r.observed_value)))
        .collect();
    let up = samples
        .iter()
        .filter(|(_, st, _)| *st != HealthStatus::Fail)
        .count();
    let uptime = (!samples.is_empty()).then(|| up as f64 / samples.len() as f64);
    Ok(axum::Json(HealthHistoryOut {
        component: q.component,
        observed_unit: unit,
        since,
        until,
        points: downsample(&samples, since, until, points as usize),
        uptime,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn downsampling_keeps_the_worst_status_and_the_highest_value() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let samples = vec![
            (at(0), HealthStatus::Pass, Some(1.0)),
            (at(10), HealthStatus::Fail, Some(9.0)),
            (at(20), HealthStatus::Pass, Some(2.0)),
            (at(70), HealthStatus::Warn, None),
        ];
        let all = downsample(&samples, t0, at(80), 10);
        assert_eq!(all.len(), 4, "fewer samples than points: all of them");
        let two = downsample(&samples, t0, at(80), 2);
        assert_eq!(two.len(), 2);
        assert_eq!(
            (two[0].status, two[0].observed_value, two[0].samples),
            (HealthStatus::Fail, Some(9.0), 3)
        );
        assert_eq!((two[1].status, two[1].samples), (HealthStatus::Warn, 1));
    }
}
