-- The SQL job queue, as migrations/postgres has it (times RFC 3339 text, JSON text).
CREATE TABLE jobs (
    id                  TEXT PRIMARY KEY,
    queue               TEXT NOT NULL,
    kind                TEXT NOT NULL,
    payload             TEXT NOT NULL,
    priority            INTEGER NOT NULL DEFAULT 0,
    state               TEXT NOT NULL CHECK (state IN ('waiting', 'delayed', 'active', 'completed', 'retrying', 'dead', 'cancelled')),
    run_at              TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    backoff_base_ms     INTEGER NOT NULL,
    backoff_cap_ms      INTEGER NOT NULL,
    unique_key          TEXT,
    correlation_id      TEXT,
    progress            INTEGER NOT NULL DEFAULT 0,
    progress_message    TEXT,
    result              TEXT,
    last_error          TEXT,
    error_fingerprint   TEXT,
    worker_id           TEXT,
    lease_until         TEXT,
    cancel_requested    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT
);
-- Fetching: the ready jobs of a queue, highest priority first, FIFO within a priority.
CREATE INDEX idx_jobs_ready ON jobs(queue, priority DESC, id) WHERE state IN ('waiting', 'delayed', 'retrying');
CREATE INDEX idx_jobs_lease ON jobs(lease_until) WHERE state = 'active';
CREATE INDEX idx_jobs_queue_state ON jobs(queue, state, id);
CREATE INDEX idx_jobs_dead_fingerprint ON jobs(queue, error_fingerprint) WHERE state = 'dead';
-- Deduplication while a job with the key is waiting or active.
CREATE UNIQUE INDEX idx_jobs_unique ON jobs(queue, unique_key) WHERE unique_key IS NOT NULL AND state IN ('waiting', 'delayed', 'retrying', 'active');

-- One row per attempt, for the job's timeline.
CREATE TABLE job_attempts (
    job_id              TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt             INTEGER NOT NULL,
    worker_id           TEXT NOT NULL,
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    outcome             TEXT,
    error               TEXT,
    error_fingerprint   TEXT,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE queue_settings (
    queue               TEXT PRIMARY KEY,
    paused              BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at          TEXT NOT NULL
);
