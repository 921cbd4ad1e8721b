-- Campaign exports: a campaign's approved renders and a manifest, packaged into one zip in the
-- blob store by an `export.build` job. The initial schema had a per-execution `exports` table
-- that nothing wrote; an export is per campaign, so the table is recreated in that shape.
DROP TABLE exports;
CREATE TABLE exports (
    id              TEXT PRIMARY KEY,
    campaign_id     TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    format          TEXT NOT NULL CHECK (format IN ('zip')),
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'ready', 'failed')),
    progress        INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    renders         INTEGER,
    storage_key     TEXT,
    size_bytes      BIGINT,
    sha256          TEXT,
    error           TEXT,
    requested_by    TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_exports_campaign_id ON exports(campaign_id, id DESC);
-- One export at a time per campaign (a second request while one is queued or running is a 409).
CREATE UNIQUE INDEX idx_exports_one_open ON exports(campaign_id) WHERE status IN ('queued', 'running');
