-- Uploads: the server owns storage keys. An asset's bytes arrive through `POST
-- /api/assets/{id}/upload` (one request) or a tus upload (`/api/uploads`, resumable); the asset
-- records the sniffed content type, the sanitised file name and when it was uploaded.
ALTER TABLE assets ADD COLUMN content_type TEXT;
ALTER TABLE assets ADD COLUMN filename TEXT;
ALTER TABLE assets ADD COLUMN uploaded_at TEXT;
CREATE INDEX idx_assets_storage_key ON assets(storage_key);

-- Keys recorded before the server owned them came from clients: they are kept only when they lie
-- under the asset's own client (`clients/<client>/`), so no asset keeps pointing at another
-- client's blob.
UPDATE assets SET storage_key = NULL
 WHERE storage_key IS NOT NULL AND substr(storage_key, 1, length('clients/' || client_id || '/')) <> 'clients/' || client_id || '/';

-- A resumable upload: what was declared at creation, how much has arrived, when it expires.
CREATE TABLE uploads (
    id              TEXT PRIMARY KEY,
    asset_id        TEXT NOT NULL REFERENCES assets(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    created_by      TEXT NOT NULL,
    length          INTEGER NOT NULL CHECK (length >= 0),
    received        INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= length),
    content_type    TEXT NOT NULL,
    filename        TEXT,
    status          TEXT NOT NULL CHECK (status IN ('open', 'completing', 'completed', 'failed')),
    error           TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);
CREATE INDEX idx_uploads_status_expires ON uploads(status, expires_at);
CREATE INDEX idx_uploads_asset_id ON uploads(asset_id);

-- Its parts, one per PATCH that stored bytes, in offset order; each is a temporary blob.
CREATE TABLE upload_parts (
    upload_id       TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    start_offset    INTEGER NOT NULL CHECK (start_offset >= 0),
    size            INTEGER NOT NULL CHECK (size > 0),
    storage_key     TEXT NOT NULL,
    PRIMARY KEY (upload_id, start_offset)
);
CREATE INDEX idx_upload_parts_storage_key ON upload_parts(storage_key);
