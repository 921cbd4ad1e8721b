//! Endpoints: a client's URL with its event filter, custom headers, rate limit, secret
//! generation and circuit breaker. Created and changed by the client's members
//! (`/api/webhooks/endpoints…`) and by operators (`/api/ops/webhooks/endpoints…`); every change
//! is audited. A URL is checked by the SSRF guard when it is given (its name resolved, every
//! address public) and again at each delivery.

use super::settings::WebhookConfig;
use super::signing;
use crate::audit::{Actor, Entry};
use crate::auth::Principal;
use crate::db::{BeginWrite as _, Db};
use crate::error::{Error, Result};
use crate::ids::{ClientId, WebhookEndpointId};
use crate::state::AppState;
use crate::{record_on, with_db};
use airwave_api::{
    ops_event, Role, WebhookChangedEvent, WebhookCircuit, WebhookEndpointCreatedOut,
    WebhookEndpointIn, WebhookEndpointOut, WebhookEndpointPatch, WebhookSecretOut,
};
use chrono::{DateTime, Utc};
use secrecy::SecretSlice;
use serde_json::json;
use std::collections::BTreeMap;

/// Which tree a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `/api/ops/webhooks…`: staff roles (support reads).
    Ops,
    /// `/api/webhooks…`: a client's members (and admins), for their own clients.
    Client,
}

const OPS_READERS: &[Role] = &[Role::Admin, Role::Operator, Role::Support];
const OPS_WRITERS: &[Role] = &[Role::Admin, Role::Operator];

/// Fails unless `who` may read (or, with `write`, change) `client`'s endpoints through `access`.
pub async fn authorize(
    s: &AppState,
    who: &Principal,
    access: Access,
    client: &str,
    write: bool,
) -> Result<()> {
    match access {
        Access::Ops => who.require(if write { OPS_WRITERS } else { OPS_READERS }),
        Access::Client if write => crate::clients::ensure_can_write(s, who, client).await,
        Access::Client => crate::clients::ensure_can_read(s, who, client).await,
    }
}

/// An endpoint as stored (no `Debug`: its custom headers' values may be credentials).
#[derive(Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub client_id: String,
    pub url: String,
    pub description: String,
    pub event_types: String,
    pub headers: String,
    pub rate_limit_per_s: Option<i32>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub generation: i64,
    pub previous_until: Option<DateTime<Utc>>,
    pub circuit: String,
    pub circuit_retry_at: Option<DateTime<Utc>>,
    pub circuit_opens: i32,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "id, client_id, url, description, event_types, headers, rate_limit_per_s, disabled_at, disabled_reason, \
    generation, previous_until, circuit, circuit_retry_at, circuit_opens, consecutive_failures, failing_since, last_success_at, \
    last_failure_at, created_at";

impl EndpointRow {
    pub fn types(&self) -> Vec<String> {
        serde_json::from_str(&self.event_types).unwrap_or_default()
    }

    pub fn takes(&self, event_type: &str) -> bool {
        let types = self.types();
        types.is_empty() || types.iter().any(|t| t == event_type)
    }

    pub fn headers(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.headers).unwrap_or_default()
    }

    pub fn open(&self) -> bool {
        self.circuit == "open"
    }

    /// The secrets deliveries are signed with now: the current one, and the previous one during
    /// a rotation's overlap.
    pub fn secrets(&self, key: &SecretSlice<u8>, now: DateTime<Utc>) -> Vec<[u8; 32]> {
        let mut out = vec![signing::endpoint_secret(key, &self.id, self.generation)];
        if self.generation > 1 && self.previous_until.is_some_and(|u| u > now) {
            out.push(signing::endpoint_secret(key, &self.id, self.generation - 1));
        }
        out
    }
}

pub async fn load(db: &Db, id: &str) -> std::result::Result<Option<EndpointRow>, sqlx::Error> {
    with_db!(db, pool => {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await
    })
}

/// The endpoint `id`, if `who` may see it through `access` (404 otherwise).
pub async fn find(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookEndpointId,
    write: bool,
) -> Result<EndpointRow> {
    let row = load(&s.db, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    match authorize(s, who, access, &row.client_id, write).await {
        // A member of another client learns nothing about it.
        Err(Error::NotFound(_)) => Err(Error::not_found("webhook endpoint")),
        r => r.map(|()| row),
    }
}

/// The resolver endpoints' names are looked up with.
pub fn resolver(
    config: &WebhookConfig,
) -> std::result::Result<hickory_resolver::TokioResolver, crate::email::domain::DnsError> {
    Ok(match config.dns_server {
        Some(addr) => crate::email::domain::HickoryDns::at(addr)?,
        None => crate::email::domain::HickoryDns::system()?,
    }
    .into_resolver())
}

/// Checks an endpoint's URL: its form, and every address its name resolves to now.
pub async fn check_url(config: &WebhookConfig, text: &str) -> Result<url::Url> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2000 {
        return Err(Error::invalid(
            "invalid_url",
            "`url` must be 1 to 2000 characters",
        ));
    }
    let url = url::Url::parse(text)
        .map_err(|e| Error::invalid("invalid_url", format!("`url` is not a URL: {e}")))?;
    let guard = config.guard();
    let refused = |e: crate::outbound::Refused| Error::invalid("url_refused", e.to_string());
    guard.check_url(&url).map_err(refused)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        if !guard.host_allowed(host) {
            let r = resolver(config).map_err(|e| Error::Internal(anyhow::Error::new(e)))?;
            let ips: Vec<std::net::IpAddr> = match r.lookup_ip(format!("{host}.")).await {
                Ok(l) => l.iter().collect(),
                Err(e) => {
                    return Err(Error::invalid(
                        "url_unresolved",
                        format!("`{host}` does not resolve: {e}"),
                    ))
                }
            };
            guard.check_resolved(host, &ips).map_err(refused)?;
        }
    }
    Ok(url)
}

fn check_types(types: &[String]) -> Result<Vec<String>> {
    if types.len() > 20 {
        return Err(Error::invalid(
            "invalid_event_types",
            "at most 20 event types",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for t in types {
        if !super::catalogue::known(t) {
            return Err(Error::invalid(
                "invalid_event_types",
                format!(
                    "there is no event type `{}` (see GET /api/webhooks/event-types)",
                    t.chars().take(60).collect::<String>()
                ),
            ));
        }
        if !out.contains(t) {
            out.push(t.clone());
        }
    }
    Ok(out)
}

fn check_headers(h: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if h.len() > 10 {
        return Err(Error::invalid(
            "invalid_headers",
            "at most 10 custom headers",
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in h {
        let lower = name.to_ascii_lowercase();
        let bad = |why: &str| {
            Err(Error::invalid(
                "invalid_headers",
                format!(
                    "header `{}` {why}",
                    name.chars().take(60).collect::<String>()
                ),
            ))
        };
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() || lower.len() > 100 {
            return bad("is not a valid header name");
        }
        if lower.starts_with("webhook-")
            || lower.starts_with("content-")
            || matches!(
                lower.as_str(),
                "host" | "user-agent" | "connection" | "transfer-encoding" | "te" | "upgrade"
            )
        {
            return bad("is set by the delivery itself");
        }
        if value.len() > 1000 || http::HeaderValue::from_str(value).is_err() {
            return bad("has a value that is not valid (printable, up to 1000 characters)");
        }
        if out.insert(lower, value.clone()).is_some() {
            return bad("is given twice (header names are case-insensitive)");
        }
    }
    Ok(out)
}

fn check_description(d: Option<&str>) -> Result<String> {
    let d = d.unwrap_or("").trim();
    if d.chars().count() > 500 {
        return Err(Error::invalid(
            "invalid_description",
            "`description` is at most 500 characters",
        ));
    }
    Ok(d.to_owned())
}

fn check_rate(r: Option<i32>) -> Result<Option<i32>> {
    match r {
        None | Some(0) => Ok(None),
        Some(n) if (1..=1000).contains(&n) => Ok(Some(n)),
        Some(_) => Err(Error::invalid(
            "invalid_rate_limit",
            "`rate_limit_per_s` must be 1 to 1000 (0: none)",
        )),
    }
}

/// A URL as the audit log keeps it: without its query and fragment (where tokens often are).
fn audited(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// The health score: success rate of the last 50 attempts, lowered when they are slow.
async fn health(db: &Db, id: &str) -> Result<(Option<i32>, Option<f64>, Option<i64>)> {
    let rows: Vec<(String, i64)> = with_db!(db, pool => {
        sqlx::query_as("SELECT outcome, duration_ms FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY started_at DESC LIMIT 50")
            .bind(id)
            .fetch_all(pool)
            .await?
    });
    if rows.is_empty() {
        return Ok((None, None, None));
    }
    let ok = rows.iter().filter(|(o, _)| o == "delivered").count();
    let rate = ok as f64 / rows.len() as f64;
    let mut lat: Vec<i64> = rows.iter().map(|(_, d)| *d).collect();
    lat.sort_unstable();
    let p50 = lat[lat.len() / 2];
    let factor = match p50 {
        0..=1000 => 1.0,
        1001..=5000 => 0.9,
        _ => 0.75,
    };
    Ok((
        Some((rate * factor * 100.0).round() as i32),
        Some(rate),
        Some(p50),
    ))
}

pub async fn to_out(db: &Db, r: EndpointRow) -> Result<WebhookEndpointOut> {
    let (health, success_rate, p50_latency_ms) = health(db, &r.id).await?;
    let counts: Vec<(String, i64)> = with_db!(db, pool => {
        sqlx::query_as("SELECT status, COUNT(*) FROM webhook_messages WHERE endpoint_id = $1 AND status IN ('pending', 'held', 'failed') GROUP BY status")
            .bind(&r.id)
            .fetch_all(pool)
            .await?
    });
    let count = |s: &[&str]| {
        counts
            .iter()
            .filter(|(k, _)| s.contains(&k.as_str()))
            .map(|(_, n)| n)
            .sum()
    };
    Ok(WebhookEndpointOut {
        event_types: r.types(),
        header_names: r.headers().into_keys().collect(),
        circuit: if r.open() {
            WebhookCircuit::Open
        } else {
            WebhookCircuit::Closed
        },
        enabled: r.disabled_at.is_none(),
        health,
        success_rate,
        p50_latency_ms,
        pending: count(&["pending", "held"]),
        failed: count(&["failed"]),
        id: r.id,
        client_id: r.client_id,
        url: r.url,
        description: r.description,
        rate_limit_per_s: r.rate_limit_per_s,
        disabled_at: r.disabled_at,
        disabled_reason: r.disabled_reason,
        circuit_retry_at: r.circuit_retry_at,
        consecutive_failures: r.consecutive_failures,
        failing_since: r.failing_since,
        last_success_at: r.last_success_at,
        last_failure_at: r.last_failure_at,
        secret_generation: r.generation,
        previous_secret_until: r.previous_until,
        created_at: r.created_at,
    })
}

/// Tells the operations stream (the console's Webhooks view refreshes; alert rules watch
/// `circuit_opened` and `disabled`).
pub async fn changed(
    ops: &crate::ops::Publisher,
    now: DateTime<Utc>,
    endpoint: &str,
    client: &str,
    kind: &str,
    message: Option<&str>,
    detail: Option<String>,
) {
    let event = WebhookChangedEvent {
        endpoint_id: endpoint.to_owned(),
        client_id: client.to_owned(),
        kind: kind.to_owned(),
        message_id: message.map(str::to_owned),
        detail,
        time: now,
    };
    ops.publish(now, ops_event::WEBHOOK_CHANGED, &event).await;
}

pub async fn list(
    s: &AppState,
    who: &Principal,
    access: Access,
    client: Option<&ClientId>,
    limit: i64,
    cursor: Option<&WebhookEndpointId>,
) -> Result<airwave_api::Page<WebhookEndpointOut>> {
    match (access, client) {
        (_, Some(c)) => authorize(s, who, access, c.as_str(), false).await?,
        (Access::Ops, None) => authorize(s, who, access, "", false).await?,
        (Access::Client, None) => {
            return Err(Error::invalid("invalid_query", "`client_id` is required"))
        }
    }
    let rows: Vec<EndpointRow> = with_db!(&s.db, pool => {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE ($1 IS NULL OR client_id = $1) AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(client.map(ClientId::as_str))
        .bind(cursor.map(WebhookEndpointId::as_str))
        .bind(limit + 1)
        .fetch_all(pool)
        .await?
    });
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(to_out(&s.db, r).await?);
    }
    Ok(crate::paging::page(items, limit, |e| e.id.clone()))
}

pub async fn create(
    s: &AppState,
    who: &Principal,
    access: Access,
    body: WebhookEndpointIn,
    actor: &Actor,
) -> Result<WebhookEndpointCreatedOut> {
    let client: ClientId = body
        .client_id
        .parse()
        .map_err(|e| Error::invalid("invalid_client_id", format!("`client_id`: {e}")))?;
    authorize(s, who, access, client.as_str(), true).await?;
    if access == Access::Ops {
        // The client must exist (members learn that from their own check).
        crate::clients::ensure_can_read(s, who, client.as_str()).await?;
    }
    let config = &s.config.webhooks;
    let types = check_types(&body.event_types)?;
    let headers = check_headers(&body.headers.unwrap_or_default())?;
    let description = check_description(body.description.as_deref())?;
    let rate = check_rate(body.rate_limit_per_s)?;
    let url = check_url(config, &body.url).await?;
    let now = s.clock.now();
    let id = WebhookEndpointId::new(now);
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM webhook_endpoints WHERE client_id = $1")
            .bind(client.as_str()).fetch_one(&mut *tx).await?;
        if n >= config.max_endpoints {
            return Err(Error::conflict("too_many_endpoints", format!("a client may have at most {} endpoints (AIRWAVE_WEBHOOK_MAX_ENDPOINTS)", config.max_endpoints)));
        }
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, client_id, url, description, event_types, headers, rate_limit_per_s, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(id.as_str()).bind(client.as_str()).bind(url.as_str()).bind(&description)
        .bind(json!(types).to_string()).bind(json!(headers).to_string()).bind(rate)
        .bind(who.user_id.as_str()).bind(now)
        .execute(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.endpoint.create", target_type: Some("webhook_endpoint"), target_id: Some(id.as_str()),
            detail: json!({"client_id": client.as_str(), "url": audited(url.as_str()), "event_types": types}) })?;
        tx.commit().await?;
    });
    let row = load(&s.db, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    changed(
        &s.ops(),
        now,
        id.as_str(),
        client.as_str(),
        "created",
        None,
        None,
    )
    .await;
    let secret = signing::shown(&signing::endpoint_secret(&s.signing_key, id.as_str(), 1));
    Ok(WebhookEndpointCreatedOut {
        endpoint: to_out(&s.db, row).await?,
        secret,
    })
}

pub async fn update(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookEndpointId,
    body: WebhookEndpointPatch,
    actor: &Actor,
) -> Result<WebhookEndpointOut> {
    let row = find(s, who, access, id, true).await?;
    let config = &s.config.webhooks;
    let url = match &body.url {
        Some(u) => check_url(config, u).await?.to_string(),
        None => row.url.clone(),
    };
    let types = match &body.event_types {
        Some(t) => check_types(t)?,
        None => row.types(),
    };
    let headers = match &body.headers {
        Some(h) => check_headers(h)?,
        None => row.headers(),
    };
    let description = match &body.description {
        Some(d) => check_description(Some(d))?,
        None => row.description.clone(),
    };
    let rate = match body.rate_limit_per_s {
        Some(r) => check_rate(Some(r))?,
        None => row.rate_limit_per_s,
    };
    if body
        .disabled_reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > 500)
    {
        return Err(Error::invalid(
            "invalid_reason",
            "`disabled_reason` is at most 500 characters",
        ));
    }
    let now = s.clock.now();
    let (disabled_at, reason) = match body.enabled {
        Some(true) => (None, None),
        Some(false) if row.disabled_at.is_some() => (row.disabled_at, row.disabled_reason.clone()),
        Some(false) => (
            Some(now),
            Some(
                body.disabled_reason
                    .clone()
                    .unwrap_or_else(|| "disabled by a person".into()),
            ),
        ),
        None => (row.disabled_at, row.disabled_reason.clone()),
    };
    let enabling = body.enabled == Some(true) && (row.disabled_at.is_some() || row.open());
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $2, description = $3, event_types = $4, headers = $5, rate_limit_per_s = $6,
                disabled_at = CASE WHEN $11 THEN $7 ELSE disabled_at END,
                disabled_reason = CASE WHEN $11 THEN $8 ELSE disabled_reason END, updated_at = $9,
                circuit = CASE WHEN $10 THEN 'closed' ELSE circuit END,
                circuit_retry_at = CASE WHEN $10 THEN NULL ELSE circuit_retry_at END,
                circuit_opens = CASE WHEN $10 THEN 0 ELSE circuit_opens END,
                consecutive_failures = CASE WHEN $10 THEN 0 ELSE consecutive_failures END,
                failing_since = CASE WHEN $10 THEN NULL ELSE failing_since END
             WHERE id = $1",
        )
        .bind(id.as_str()).bind(&url).bind(&description).bind(json!(types).to_string()).bind(json!(headers).to_string())
        .bind(rate).bind(disabled_at).bind(reason.as_deref()).bind(now).bind(enabling).bind(body.enabled.is_some())
        .execute(&mut *tx).await?;
        if body.enabled == Some(false) && row.disabled_at.is_none() {
            // As when it is disabled for failing: its waiting messages fail (recoverable later).
            sqlx::query("UPDATE webhook_messages SET status = 'failed', last_error = $2, updated_at = $3 WHERE endpoint_id = $1 AND status IN ('pending', 'held')")
                .bind(id.as_str()).bind(format!("the endpoint was disabled: {}", reason.as_deref().unwrap_or(""))).bind(now)
                .execute(&mut *tx).await?;
        }
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.endpoint.update", target_type: Some("webhook_endpoint"), target_id: Some(id.as_str()),
            detail: json!({"url": audited(&url), "event_types": types, "enabled": disabled_at.is_none(), "reason": reason}) })?;
        tx.commit().await?;
    });
    if enabling {
        super::deliver::release_held(&s.db, &*s.queue, &*s.clock, id.as_str()).await?;
    }
    let kind = match body.enabled {
        Some(true) if row.disabled_at.is_some() => "enabled",
        Some(false) if row.disabled_at.is_none() => "disabled",
        _ => "updated",
    };
    changed(
        &s.ops(),
        now,
        id.as_str(),
        &row.client_id,
        kind,
        None,
        reason,
    )
    .await;
    let row = load(&s.db, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    to_out(&s.db, row).await
}

pub async fn delete(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookEndpointId,
    actor: &Actor,
) -> Result<()> {
    let row = find(s, who, access, id, true).await?;
    let now = s.clock.now();
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.endpoint.delete", target_type: Some("webhook_endpoint"), target_id: Some(id.as_str()),
            detail: json!({"client_id": row.client_id, "url": audited(&row.url)}) })?;
        tx.commit().await?;
    });
    changed(
        &s.ops(),
        now,
        id.as_str(),
        &row.client_id,
        "deleted",
        None,
        None,
    )
    .await;
    Ok(())
}

/// A new secret (generation + 1); the previous one stays valid for the overlap. A rotation
/// during an overlap needs `force` (the oldest secret then ends at once).
pub async fn rotate(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookEndpointId,
    force: bool,
    actor: &Actor,
) -> Result<WebhookSecretOut> {
    let row = find(s, who, access, id, true).await?;
    let now = s.clock.now();
    if row.previous_until.is_some_and(|u| u > now) && !force {
        return Err(Error::conflict(
            "rotation_in_progress",
            "the previous rotation's overlap has not ended: revoke the previous secret first, or rotate with `force`",
        ));
    }
    let overlap =
        chrono::Duration::from_std(s.config.webhooks.rotation_overlap).unwrap_or_default();
    let until = (overlap > chrono::Duration::zero()).then(|| now + overlap);
    let generation = row.generation + 1;
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        let n = sqlx::query("UPDATE webhook_endpoints SET generation = $2, previous_until = $3, updated_at = $4 WHERE id = $1 AND generation = $5")
            .bind(id.as_str()).bind(generation).bind(until).bind(now).bind(row.generation)
            .execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(Error::conflict("rotation_in_progress", "another rotation of this endpoint happened at the same time"));
        }
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.secret.rotate", target_type: Some("webhook_endpoint"), target_id: Some(id.as_str()),
            detail: json!({"generation": generation, "previous_until": until, "force": force}) })?;
        tx.commit().await?;
    });
    changed(
        &s.ops(),
        now,
        id.as_str(),
        &row.client_id,
        "rotated",
        None,
        None,
    )
    .await;
    Ok(WebhookSecretOut {
        secret: signing::shown(&signing::endpoint_secret(
            &s.signing_key,
            id.as_str(),
            generation,
        )),
        generation,
        previous_secret_until: until,
    })
}

/// Ends a rotation's overlap now: only the current secret signs.
pub async fn revoke_previous(
    s: &AppState,
    who: &Principal,
    access: Access,
    id: &WebhookEndpointId,
    actor: &Actor,
) -> Result<WebhookEndpointOut> {
    let row = find(s, who, access, id, true).await?;
    let now = s.clock.now();
    with_db!(&s.db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query("UPDATE webhook_endpoints SET previous_until = NULL, updated_at = $2 WHERE id = $1")
            .bind(id.as_str()).bind(now).execute(&mut *tx).await?;
        record_on!(&mut *tx, now, actor, Entry { action: "webhook.secret.revoke_previous", target_type: Some("webhook_endpoint"), target_id: Some(id.as_str()),
            detail: json!({"generation": row.generation}) })?;
        tx.commit().await?;
    });
    changed(
        &s.ops(),
        now,
        id.as_str(),
        &row.client_id,
        "rotated",
        None,
        None,
    )
    .await;
    let row = load(&s.db, id.as_str())
        .await?
        .ok_or_else(|| Error::not_found("webhook endpoint"))?;
    to_out(&s.db, row).await
}
