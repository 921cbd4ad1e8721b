-- Outgoing webhooks (Standard Webhooks v1). An endpoint per client URL: its event filter, custom
-- headers, secret generation (the secret itself is derived from the server key, never stored),
-- the previous generation's overlap after a rotation, and its circuit breaker.
CREATE TABLE webhook_endpoints (
    id                      TEXT PRIMARY KEY,
    client_id               TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    url                     TEXT NOT NULL,
    description             TEXT NOT NULL DEFAULT '',
    event_types             TEXT NOT NULL,
    headers                 TEXT NOT NULL DEFAULT '{}',
    rate_limit_per_s        INTEGER,
    disabled_at             TIMESTAMPTZ,
    disabled_reason         TEXT,
    generation              BIGINT NOT NULL DEFAULT 1,
    previous_until          TIMESTAMPTZ,
    circuit                 TEXT NOT NULL DEFAULT 'closed' CHECK (circuit IN ('closed', 'open')),
    circuit_retry_at        TIMESTAMPTZ,
    circuit_opens           INTEGER NOT NULL DEFAULT 0,
    consecutive_failures    INTEGER NOT NULL DEFAULT 0,
    failing_since           TIMESTAMPTZ,
    last_success_at         TIMESTAMPTZ,
    last_failure_at         TIMESTAMPTZ,
    created_by              TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_webhook_endpoints_client ON webhook_endpoints(client_id, id);

-- One event for one endpoint: the exact body signed and sent, its state and schedule. The
-- webhook-id is the message's id, the same on every attempt and replay.
CREATE TABLE webhook_messages (
    id                      TEXT PRIMARY KEY,
    endpoint_id             TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    client_id               TEXT NOT NULL,
    event_id                TEXT,
    event_type              TEXT NOT NULL,
    body                    TEXT NOT NULL,
    status                  TEXT NOT NULL CHECK (status IN ('pending', 'held', 'delivered', 'failed')),
    attempts                INTEGER NOT NULL DEFAULT 0,
    round_start             INTEGER NOT NULL DEFAULT 0,
    next_attempt_at         TIMESTAMPTZ,
    last_status             INTEGER,
    last_error              TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL,
    delivered_at            TIMESTAMPTZ
);
CREATE UNIQUE INDEX idx_webhook_messages_event ON webhook_messages(endpoint_id, event_id);
CREATE INDEX idx_webhook_messages_endpoint ON webhook_messages(endpoint_id, id DESC);
CREATE INDEX idx_webhook_messages_status ON webhook_messages(endpoint_id, status, created_at);
-- The repair sweep: pending messages whose attempt is overdue.
CREATE INDEX idx_webhook_messages_due ON webhook_messages(status, next_attempt_at);

-- Every attempt: what was sent (headers; custom header values redacted) and what came back.
CREATE TABLE webhook_attempts (
    id                      TEXT PRIMARY KEY,
    message_id              TEXT NOT NULL REFERENCES webhook_messages(id) ON DELETE CASCADE,
    endpoint_id             TEXT NOT NULL,
    attempt                 INTEGER NOT NULL,
    started_at              TIMESTAMPTZ NOT NULL,
    duration_ms             BIGINT NOT NULL,
    status_code             INTEGER,
    outcome                 TEXT NOT NULL CHECK (outcome IN ('delivered', 'failed')),
    error_class             TEXT,
    error                   TEXT,
    request_headers         TEXT NOT NULL,
    response_headers        TEXT,
    response_body           TEXT
);
CREATE INDEX idx_webhook_attempts_message ON webhook_attempts(message_id, attempt);
CREATE INDEX idx_webhook_attempts_endpoint ON webhook_attempts(endpoint_id, started_at DESC);

-- "Recover all failed messages of an endpoint since T": a job with its progress.
CREATE TABLE webhook_recoveries (
    id                      TEXT PRIMARY KEY,
    endpoint_id             TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    since                   TIMESTAMPTZ NOT NULL,
    status                  TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    total                   INTEGER NOT NULL,
    done                    INTEGER NOT NULL DEFAULT 0,
    error                   TEXT,
    created_by              TEXT,
    created_at              TIMESTAMPTZ NOT NULL,
    finished_at             TIMESTAMPTZ
);
CREATE INDEX idx_webhook_recoveries_endpoint ON webhook_recoveries(endpoint_id, id DESC);
