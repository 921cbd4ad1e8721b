-- E-mail delivery: the emails table becomes the e-mail log. A message keeps its template and
-- data (links' tokens replaced by a marker, with a reference to make them again at send time),
-- its Message-ID, provider id, status and attempts.
ALTER TABLE emails ADD COLUMN from_address TEXT;
ALTER TABLE emails ADD COLUMN message JSONB;
ALTER TABLE emails ADD COLUMN secret_ref JSONB;
ALTER TABLE emails ADD COLUMN message_id TEXT;
ALTER TABLE emails ADD COLUMN transport TEXT;
ALTER TABLE emails ADD COLUMN provider_id TEXT;
ALTER TABLE emails ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE emails ADD COLUMN last_error TEXT;
ALTER TABLE emails ADD COLUMN correlation_id TEXT;
ALTER TABLE emails ADD COLUMN resend_of TEXT REFERENCES emails(id) ON DELETE SET NULL;
ALTER TABLE emails ADD COLUMN resend_reason TEXT;
ALTER TABLE emails ADD COLUMN dedupe_key TEXT;
ALTER TABLE emails ADD COLUMN user_id TEXT;
ALTER TABLE emails ADD COLUMN client_id TEXT;
ALTER TABLE emails ADD COLUMN updated_at TIMESTAMPTZ;
ALTER TABLE emails ADD COLUMN status_at TIMESTAMPTZ;
CREATE UNIQUE INDEX idx_emails_dedupe_key ON emails(dedupe_key);
CREATE INDEX idx_emails_created_at ON emails(created_at DESC, id DESC);
CREATE INDEX idx_emails_status ON emails(status, created_at DESC);
CREATE INDEX idx_emails_template ON emails(template, created_at DESC);
CREATE INDEX idx_emails_user_id ON emails(user_id, created_at);
CREATE INDEX idx_emails_client_id ON emails(client_id, created_at);
CREATE INDEX idx_emails_provider_id ON emails(provider_id);

-- Messages recorded before delivery existed were never sent, and some held a single-use link's
-- token in the clear: they are closed as failed and their bodies removed.
UPDATE emails SET status = 'failed', last_error = 'recorded before e-mail delivery existed; never sent',
    text_body = '[removed: recorded before e-mail delivery existed]', updated_at = created_at, status_at = created_at
    WHERE message IS NULL;

-- Every attempt to hand a message to the transport.
CREATE TABLE email_attempts (
    email_id        TEXT NOT NULL REFERENCES emails(id) ON DELETE CASCADE,
    attempt         INTEGER NOT NULL,
    transport       TEXT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    duration_ms     BIGINT NOT NULL,
    outcome         TEXT NOT NULL,
    error           TEXT,
    provider_id     TEXT,
    PRIMARY KEY (email_id, attempt)
);

-- Addresses no message is sent to: hard bounces, complaints and manual entries.
CREATE TABLE email_suppressions (
    address         TEXT PRIMARY KEY,
    reason          TEXT NOT NULL,
    note            TEXT,
    email_id        TEXT,
    created_by      TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);

-- Who asked for an execution: the render-complete mail goes to them.
ALTER TABLE executions ADD COLUMN created_by TEXT REFERENCES users(id) ON DELETE SET NULL;
