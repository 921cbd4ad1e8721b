-- The initial schema. Ids are prefixed, time-sortable text (usr_…, cli_…); times are timestamptz.

CREATE TABLE users (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'support', 'member')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX idx_sessions_user_id ON sessions(user_id);

CREATE TABLE api_tokens (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'support', 'member')),
    token_hash      TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL,
    last_used_at    TIMESTAMPTZ,
    expires_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX idx_api_tokens_user_id ON api_tokens(user_id);

CREATE TABLE password_resets (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash      TEXT NOT NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ
);
CREATE INDEX idx_password_resets_user_id ON password_resets(user_id);

-- Failed logins per e-mail address (known or not, so lockout reveals nothing).
CREATE TABLE login_throttle (
    email           TEXT PRIMARY KEY,
    failures        INTEGER NOT NULL,
    window_start    TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ
);

CREATE TABLE clients (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE client_memberships (
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    added_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_id, user_id)
);
CREATE INDEX idx_client_memberships_user_id ON client_memberships(user_id);

CREATE TABLE assets (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    type            TEXT NOT NULL CHECK (type IN ('image', 'video', 'audio', 'text', 'font')),
    name            TEXT NOT NULL,
    metadata        JSONB NOT NULL DEFAULT '{}',
    storage_key     TEXT,
    size            BIGINT CHECK (size IS NULL OR size >= 0),
    checksum        TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE campaigns (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    description     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_campaigns_client_id ON campaigns(client_id);

CREATE TABLE matrices (
    id              TEXT PRIMARY KEY,
    campaign_id     TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    template        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_matrices_campaign_id ON matrices(campaign_id);

CREATE TABLE executions (
    id              TEXT PRIMARY KEY,
    matrix_id       TEXT NOT NULL REFERENCES matrices(id) ON DELETE CASCADE,
    campaign_id     TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'rendering', 'completed', 'failed', 'cancelled')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    params          JSONB NOT NULL DEFAULT '{}',
    output_key      TEXT,
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- One row per attempt to render an execution, with the provider that did it.
CREATE TABLE renders (
    id              TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    provider        TEXT NOT NULL,
    provider_ref    TEXT,
    status          TEXT NOT NULL,
    output_key      TEXT,
    error           TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX idx_renders_execution_id ON renders(execution_id);

CREATE TABLE approval_workflows (
    id              TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    reviewer_email  TEXT,
    note            TEXT,
    comment         TEXT,
    requested_by    TEXT REFERENCES users(id) ON DELETE SET NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    decided_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_approval_workflows_execution_id ON approval_workflows(execution_id);

CREATE TABLE exports (
    id              TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    format          TEXT NOT NULL,
    status          TEXT NOT NULL,
    storage_key     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_exports_execution_id ON exports(execution_id);

-- The transactional outbox: a domain change and its event commit together; a dispatcher fans
-- undispatched events out (webhooks, analytics, alerts, the live stream).
CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    dispatched_at   TIMESTAMPTZ
);
CREATE INDEX idx_events_undispatched ON events(id) WHERE dispatched_at IS NULL;

-- Sensitive actions: who did what to what, and when.
CREATE TABLE audit_log (
    id              TEXT PRIMARY KEY,
    at              TIMESTAMPTZ NOT NULL,
    actor_user_id   TEXT,
    actor_token_id  TEXT,
    action          TEXT NOT NULL,
    target_type     TEXT,
    target_id       TEXT,
    detail          JSONB NOT NULL DEFAULT '{}',
    ip              TEXT
);
CREATE INDEX idx_audit_log_at ON audit_log(at);
CREATE INDEX idx_audit_log_actor ON audit_log(actor_user_id);
CREATE INDEX idx_audit_log_action ON audit_log(action);

-- The email outbox: every message the server sends is recorded here first.
CREATE TABLE emails (
    id              TEXT PRIMARY KEY,
    to_address      TEXT NOT NULL,
    subject         TEXT NOT NULL,
    template        TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX idx_emails_to_address ON emails(to_address);

-- The indexes of the production-readiness plan (Day 10), by their names there.
CREATE INDEX idx_assets_client_id ON assets(client_id);
CREATE INDEX idx_assets_created_at ON assets(created_at DESC);
CREATE INDEX idx_assets_type ON assets(type);
CREATE INDEX idx_executions_status ON executions(status);
CREATE INDEX idx_executions_matrix_id ON executions(matrix_id);
CREATE INDEX idx_approval_workflows_status ON approval_workflows(status);
CREATE INDEX idx_assets_client_type ON assets(client_id, type);
CREATE INDEX idx_executions_client_status ON executions(client_id, status);
CREATE INDEX idx_assets_search ON assets USING gin(
    to_tsvector('english', name || ' ' || COALESCE(metadata->>'description', ''))
);
