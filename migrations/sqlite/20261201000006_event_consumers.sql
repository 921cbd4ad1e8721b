-- Events reach every consumer. Each consumer (render, and later e-mail, webhooks, analytics,
-- alerts) keeps its own cursor into the outbox, so a second consumer never loses events to the
-- first, and one that fails holds back only itself.
--
-- On SQLite one writer at a time holds the database, so the insertion order (`seq`,
-- AUTOINCREMENT: never reused) is the commit order; `tx_id` is always 0 and keeps the queries the
-- same as on PostgreSQL, where it is the writing transaction's id.
CREATE TABLE events_v2 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id           INTEGER NOT NULL DEFAULT 0,
    id              TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    dispatched_at   TEXT
);
INSERT INTO events_v2 (id, type, subject_id, payload, created_at, dispatched_at)
SELECT id, type, subject_id, payload, created_at, dispatched_at FROM events ORDER BY id;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;

-- One row per consumer: its position in the outbox and which instance holds it (a lease).
CREATE TABLE event_consumers (
    name            TEXT PRIMARY KEY,
    cursor_tx       INTEGER NOT NULL,
    cursor_seq      INTEGER NOT NULL,
    owner           TEXT,
    lease_until     TEXT,
    delivered       INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- The render consumer replaces the single-consumer dispatcher: it starts before the first event
-- that dispatcher had not handed out (a redelivered one finds its render job, or its execution
-- already rendered, and does nothing), or after the last event when it had handed out all.
INSERT INTO event_consumers (name, cursor_tx, cursor_seq, created_at, updated_at)
SELECT 'render', 0, COALESCE((SELECT MIN(seq) - 1 FROM events WHERE dispatched_at IS NULL), (SELECT MAX(seq) FROM events), 0), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now');

-- Events a consumer failed (retrying, or parked with its error) and the later events of the same
-- subject held behind them.
CREATE TABLE event_pending (
    consumer        TEXT NOT NULL REFERENCES event_consumers(name) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    event_tx        INTEGER NOT NULL,
    event_seq       INTEGER NOT NULL,
    subject_id      TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_at         TEXT NOT NULL,
    last_error      TEXT,
    parked_at       TEXT,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX idx_event_pending_order ON event_pending (consumer, event_tx, event_seq);
CREATE INDEX idx_event_pending_subject ON event_pending (consumer, subject_id, event_tx, event_seq);
