-- Database backups and their restore drills. A backup records what it holds (per-table row
-- counts and checksums, taken from the same snapshot as the dump) so a drill can prove a restore
-- gives the same data back, and how long it took (RTO) and how old its data was (RPO).
CREATE TABLE backups (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    trigger         TEXT NOT NULL CHECK (trigger IN ('manual', 'scheduled')),
    database_kind   TEXT NOT NULL,
    format          TEXT,
    storage_key     TEXT,
    size_bytes      BIGINT,
    sha256          TEXT,
    encrypted       BOOLEAN NOT NULL DEFAULT FALSE,
    tables          JSONB,
    progress        INTEGER NOT NULL DEFAULT 0,
    duration_ms     BIGINT,
    error           TEXT,
    requested_by    TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX idx_backups_created_at ON backups(created_at DESC, id DESC);
CREATE INDEX idx_backups_status ON backups(status, finished_at DESC);

CREATE TABLE backup_drills (
    id              TEXT PRIMARY KEY,
    backup_id       TEXT NOT NULL REFERENCES backups(id) ON DELETE CASCADE,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'passed', 'failed')),
    progress        INTEGER NOT NULL DEFAULT 0,
    restore_ms      BIGINT,
    rpo_seconds     BIGINT,
    tables_checked  INTEGER,
    mismatches      JSONB,
    error           TEXT,
    requested_by    TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX idx_backup_drills_backup_id ON backup_drills(backup_id, created_at DESC);
CREATE INDEX idx_backup_drills_finished ON backup_drills(status, finished_at DESC);
