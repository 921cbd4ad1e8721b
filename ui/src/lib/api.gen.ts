// Generated from crates/api by its `typescript` unit test: do not edit.
// Regenerate with `AIRWAVE_UPDATE_TS=1 cargo test -p airwave-api typescript`.
// 64-bit integers are JSON numbers here (every count and id stays below 2^53).

export type JsonValue = number | string | boolean | null | Array<JsonValue> | { [key in string]?: JsonValue };

export type Problem = { 
/**
 * A URI naming the problem type (`about:blank` or `https://airwave.app/problems/<code>`).
 */
type: string, title: string, status: number, detail: string, 
/**
 * Stable, machine-readable code (`invalid_json`, `not_found`, `forbidden`, …).
 */
code: string, 
/**
 * The request id (also in the `x-request-id` header), for support.
 */
request_id?: string | null, };

export type Role = "admin" | "operator" | "support" | "member";

export type UserOut = { id: string, email: string, name: string, role: Role, created_at: string, 
/**
 * When an admin disabled the account (it can neither log in nor use any credential).
 */
disabled_at: string | null, };

export type HealthStatus = "pass" | "warn" | "fail";

export type HealthCheckOut = { componentId: string, componentType: string, 
/**
 * A number, in `observedUnit`.
 */
observedValue: number | null, observedUnit: string | null, status: HealthStatus, time: string, output: string | null, 
/**
 * The check warns when `observedValue` is above this (same unit); an AIrWAVE extension.
 */
warnAbove?: number | null, };

export type HealthOut = { status: HealthStatus, version: string, serviceId: string, description: string, 
/**
 * Keyed `component:measurement`, e.g. `database:responseTime`.
 */
checks: { [key in string]: Array<HealthCheckOut> }, };

export type JobStateOut = "waiting" | "delayed" | "active" | "completed" | "retrying" | "dead" | "cancelled";

export type QueueCountsOut = { waiting: number, delayed: number, active: number, completed: number, retrying: number, dead: number, cancelled: number, };

export type QueueRatesOut = { enqueued_per_min: number, completed_per_min: number, failed_per_min: number, };

export type QueueOut = { name: string, paused: boolean, counts: QueueCountsOut, 
/**
 * Averages over the last five minutes (all processes).
 */
rates: QueueRatesOut, };

export type PercentilesOut = { p50: number | null, p95: number | null, p99: number | null, };

export type QueueMinuteOut = { minute: string, enqueued: number, completed: number, 
/**
 * Failed attempts (retried or not).
 */
failed: number, 
/**
 * Jobs that went to the dead-letter queue.
 */
dead: number, 
/**
 * From due to started.
 */
wait_ms: PercentilesOut, 
/**
 * From started to finished.
 */
run_ms: PercentilesOut, };

export type QueueMetricsOut = { queue: string, since: string, until: string, minutes: Array<QueueMinuteOut>, enqueued: number, completed: number, failed: number, dead: number, wait_ms: PercentilesOut, run_ms: PercentilesOut, };

export type HealthChangedEvent = { 
/**
 * The check's key, `component:measurement` (e.g. `database:responseTime`).
 */
component: string, status: HealthStatus, 
/**
 * The status before (absent for a component's first check).
 */
previous: HealthStatus | null, observed_value: number | null, observed_unit: string | null, output: string | null, time: string, };

export type QueueStatsItem = { name: string, paused: boolean, counts: QueueCountsOut, };

export type QueueStatsEvent = { queues: Array<QueueStatsItem>, time: string, };

export type StreamGapEvent = { requested: number, oldest: number | null, };

export type HealthPointOut = { at: string, status: HealthStatus, observed_value: number | null, 
/**
 * Checks in this point.
 */
samples: number, };

export type HealthHistoryOut = { component: string, observed_unit: string | null, since: string, until: string, points: Array<HealthPointOut>, 
/**
 * Share of checks that passed or warned, 0–1 (absent with no checks).
 */
uptime: number | null, };

export type EmailTemplateOut = { name: string, description: string, 
/**
 * The subject it renders for its sample data.
 */
sample_subject: string, };

export type EmailStatus = "queued" | "sent" | "delivered" | "bounced" | "complained" | "failed" | "suppressed";

export type EmailOut = { id: string, to: string, template: string, subject: string, status: EmailStatus, attempts: number, last_error: string | null, 
/**
 * The transport that took (or last tried) it: `resend`, `smtp` or `outbox`.
 */
transport: string | null, provider_id: string | null, 
/**
 * The `Message-ID` header it carries.
 */
message_id: string | null, correlation_id: string | null, 
/**
 * The message this one sends again.
 */
resend_of: string | null, created_at: string, sent_at: string | null, status_at: string | null, };

export type EmailAttemptOut = { attempt: number, transport: string, started_at: string, duration_ms: number, 
/**
 * `sent`, `retry` or `failed`.
 */
outcome: string, error: string | null, provider_id: string | null, };

export type EmailDetailOut = { email: EmailOut, from: string | null, text: string, 
/**
 * The HTML part, to show in a sandboxed frame (no scripts, no remote loads).
 */
html: string | null, attempts: Array<EmailAttemptOut>, 
/**
 * Whether the recipient is on the suppression list now.
 */
suppressed: boolean, 
/**
 * The messages that sent this one again.
 */
resent_as: Array<string>, };

export type EmailResendIn = { 
/**
 * Required to send to a suppressed address: why (audited).
 */
override_suppression_reason: string | null, };

export type SuppressionReason = "hard_bounce" | "complaint" | "manual";

export type SuppressionOut = { address: string, reason: SuppressionReason, note: string | null, 
/**
 * The message whose bounce or complaint put it here.
 */
email_id: string | null, created_by: string | null, created_at: string, };

export type SuppressionIn = { address: string, 
/**
 * Why (audited); 1 to 500 characters.
 */
note: string, };

export type EmailChangedEvent = { id: string, template: string, status: EmailStatus, attempts: number, time: string, };

export type Page<T> = { items: Array<T>, next_cursor: string | null, };

export type JobOut = { id: string, queue: string, kind: string, payload: JsonValue, priority: number, state: JobStateOut, run_at: string, attempts: number, max_attempts: number, unique_key: string | null, correlation_id: string | null, progress: number, progress_message: string | null, result: JsonValue | null, last_error: string | null, error_fingerprint: string | null, worker_id: string | null, lease_until: string | null, cancel_requested: boolean, created_at: string, updated_at: string, started_at: string | null, finished_at: string | null, };

export type AttemptOut = { attempt: number, worker_id: string, started_at: string | null, finished_at: string | null, outcome: string, error: string | null, fingerprint: string | null, };

export type JobDetailOut = { job: JobOut, attempts: Array<AttemptOut>, };

export type BackupStatus = "queued" | "running" | "succeeded" | "failed";

export type DrillStatus = "queued" | "running" | "passed" | "failed";

export type TableStatOut = { table: string, rows: number, checksum: string, };

export type DrillOut = { id: string, backup_id: string, status: DrillStatus, 
/**
 * 0–100 while it runs.
 */
progress: number, 
/**
 * How long the restore took, download to a queryable database (the RTO it shows), in ms.
 */
restore_ms: number | null, 
/**
 * How old the backup's data was when the drill ran (the RPO it shows), in seconds.
 */
rpo_seconds: number | null, tables_checked: number | null, 
/**
 * Tables whose rows or checksum differed (empty when it passed).
 */
mismatches: Array<string>, error: string | null, created_at: string, started_at: string | null, finished_at: string | null, };

export type BackupOut = { id: string, status: BackupStatus, 
/**
 * `manual` or `scheduled`.
 */
trigger: string, 
/**
 * `sqlite` or `postgres`.
 */
database: string, 
/**
 * `sqlite-gzip` (a VACUUM INTO copy, gzipped) or `pg-custom` (pg_dump's custom format).
 */
format: string | null, size_bytes: number | null, 
/**
 * sha256 of the stored file, hex.
 */
sha256: string | null, encrypted: boolean, 
/**
 * 0–100 while it runs.
 */
progress: number, duration_ms: number | null, error: string | null, tables: Array<TableStatOut>, created_at: string, started_at: string | null, finished_at: string | null, 
/**
 * The latest restore drill of this backup.
 */
latest_drill: DrillOut | null, };

export type SlowQuerySource = "pg_stat_statements" | "slow_log";

export type SlowQueryOut = { 
/**
 * The SQL, without parameter values (`$1` …); whitespace collapsed, at most 2,000 characters.
 */
query: string, calls: number, total_ms: number, mean_ms: number, max_ms: number, 
/**
 * Rows returned or affected, over all calls.
 */
rows: number, 
/**
 * When the slow log last saw it (the slow log only).
 */
last_seen_at: string | null, };

export type SlowQueriesOut = { source: SlowQuerySource, 
/**
 * `AIRWAVE_DB_SLOW_STATEMENT_MS`: what the slow log counts as slow.
 */
threshold_ms: number, 
/**
 * Why the slow log answers when the database is PostgreSQL (the extension is missing or
 * cannot be read).
 */
note: string | null, queries: Array<SlowQueryOut>, };

export type WebhookCircuit = "closed" | "open";

export type WebhookMessageStatus = "pending" | "held" | "delivered" | "failed";

export type WebhookErrorClass = "dns" | "refused" | "connect" | "tls" | "timeout" | "status" | "redirect";

export type WebhookEndpointIn = { client_id: string, 
/**
 * `https://…` (`http://` outside production); it must not resolve to a private address.
 */
url: string, 
/**
 * Event types it takes (see `GET /api/webhooks/event-types`); empty: every type.
 */
event_types: Array<string>, description: string | null, 
/**
 * Headers sent with every delivery (up to 10; not `webhook-*`, `content-*`, `host`,
 * `user-agent`, `connection`, `transfer-encoding`, `te` or `upgrade`).
 * Their values are never shown again.
 */
headers: { [key in string]: string } | null, 
/**
 * Most deliveries a second to this endpoint (per worker process); none: unlimited.
 */
rate_limit_per_s: number | null, };

export type WebhookEndpointPatch = { url: string | null, event_types: Array<string> | null, description: string | null, headers: { [key in string]: string } | null, 
/**
 * 0 removes the limit.
 */
rate_limit_per_s: number | null, 
/**
 * `false` disables it (with `disabled_reason`); `true` enables it and closes its circuit.
 */
enabled: boolean | null, disabled_reason: string | null, };

export type WebhookEndpointOut = { id: string, client_id: string, url: string, description: string, event_types: Array<string>, 
/**
 * The custom headers' names (their values are not shown).
 */
header_names: Array<string>, rate_limit_per_s: number | null, enabled: boolean, disabled_at: string | null, disabled_reason: string | null, circuit: WebhookCircuit, circuit_retry_at: string | null, consecutive_failures: number, failing_since: string | null, 
/**
 * 0–100 from the last 50 attempts' success rate and latency; none before any attempt.
 */
health: number | null, success_rate: number | null, p50_latency_ms: number | null, last_success_at: string | null, last_failure_at: string | null, 
/**
 * The secret's generation (1, then one more per rotation).
 */
secret_generation: number, 
/**
 * Until then deliveries are signed with the previous secret too.
 */
previous_secret_until: string | null, 
/**
 * Messages waiting (pending or held) and failed.
 */
pending: number, failed: number, created_at: string, };

export type WebhookEndpointCreatedOut = { 
/**
 * `whsec_` + base64: verify deliveries with it (any Standard Webhooks library).
 */
secret: string, id: string, client_id: string, url: string, description: string, event_types: Array<string>, 
/**
 * The custom headers' names (their values are not shown).
 */
header_names: Array<string>, rate_limit_per_s: number | null, enabled: boolean, disabled_at: string | null, disabled_reason: string | null, circuit: WebhookCircuit, circuit_retry_at: string | null, consecutive_failures: number, failing_since: string | null, 
/**
 * 0–100 from the last 50 attempts' success rate and latency; none before any attempt.
 */
health: number | null, success_rate: number | null, p50_latency_ms: number | null, last_success_at: string | null, last_failure_at: string | null, 
/**
 * The secret's generation (1, then one more per rotation).
 */
secret_generation: number, 
/**
 * Until then deliveries are signed with the previous secret too.
 */
previous_secret_until: string | null, 
/**
 * Messages waiting (pending or held) and failed.
 */
pending: number, failed: number, created_at: string, };

export type WebhookRotateIn = { 
/**
 * Rotate again while the previous rotation's overlap runs (the oldest secret ends now).
 */
force: boolean, };

export type WebhookSecretOut = { secret: string, generation: number, 
/**
 * Deliveries carry the previous secret's signature too until then.
 */
previous_secret_until: string | null, };

export type WebhookMessageOut = { 
/**
 * The `webhook-id` header: the same on every attempt and replay.
 */
id: string, endpoint_id: string, event_type: string, event_id: string | null, status: WebhookMessageStatus, attempts: number, next_attempt_at: string | null, last_status: number | null, last_error: string | null, created_at: string, delivered_at: string | null, };

export type WebhookAttemptOut = { id: string, message_id: string, attempt: number, started_at: string, duration_ms: number, status_code: number | null, delivered: boolean, error_class: WebhookErrorClass | null, error: string | null, 
/**
 * The request's headers (custom headers' values redacted).
 */
request_headers: { [key in string]: string }, response_headers: { [key in string]: string }, 
/**
 * The response's body, truncated to 4 KiB.
 */
response_body: string | null, };

export type WebhookMessageDetailOut = { 
/**
 * The exact body sent (`{type, timestamp, data}`).
 */
body: string, attempt_log: Array<WebhookAttemptOut>, 
/**
 * The `webhook-id` header: the same on every attempt and replay.
 */
id: string, endpoint_id: string, event_type: string, event_id: string | null, status: WebhookMessageStatus, attempts: number, next_attempt_at: string | null, last_status: number | null, last_error: string | null, created_at: string, delivered_at: string | null, };

export type WebhookRecoverIn = { 
/**
 * Failed messages created at or after this time are delivered again.
 */
since: string, 
/**
 * Only count them.
 */
dry_run: boolean, };

export type WebhookRecoveryStatus = "running" | "done" | "failed";

export type WebhookRecoveryOut = { id: string, endpoint_id: string, since: string, status: WebhookRecoveryStatus, 
/**
 * Failed messages found when it started.
 */
total: number, 
/**
 * Of them, sent back to delivery so far.
 */
done: number, error: string | null, created_at: string, finished_at: string | null, };

export type WebhookRecoverOut = { count: number, recovery: WebhookRecoveryOut | null, };

export type WebhookEventTypeOut = { name: string, description: string, schema: JsonValue, };

export type WebhookChangedEvent = { endpoint_id: string, client_id: string, 
/**
 * `delivered`, `failed`, `retrying`, `held`, `replayed`, `circuit_opened`, `circuit_closed`,
 * `disabled`, `enabled`, `rotated`, `created`, `updated`, `deleted`, `recovery`.
 */
kind: string, message_id: string | null, detail: string | null, time: string, };
