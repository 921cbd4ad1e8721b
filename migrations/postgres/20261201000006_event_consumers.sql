-- Events reach every consumer. Each consumer (render, and later e-mail, webhooks, analytics,
-- alerts) keeps its own cursor into the outbox, so a second consumer never loses events to the
-- first, and one that fails holds back only itself.
--
-- Commit-order-safe reading: a BIGSERIAL id is drawn when a row is inserted, not when it commits,
-- so a reader of "id > N" can pass a row that commits late. Each event now records the
-- transaction that wrote it (`tx_id`); readers take events in (tx_id, seq) order and only those
-- whose transaction is older than every transaction still running (the snapshot's xmin), which
-- are final: no row can appear behind the reader's position afterwards.
ALTER TABLE events ADD COLUMN seq BIGINT;
ALTER TABLE events ADD COLUMN tx_id BIGINT;
CREATE SEQUENCE events_seq OWNED BY events.seq;
UPDATE events SET seq = o.n, tx_id = 0
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events) o
 WHERE events.id = o.id;
SELECT setval('events_seq', COALESCE((SELECT MAX(seq) FROM events), 0) + 1, false);
ALTER TABLE events ALTER COLUMN seq SET DEFAULT nextval('events_seq'), ALTER COLUMN seq SET NOT NULL;
ALTER TABLE events ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint),
                   ALTER COLUMN tx_id SET NOT NULL;
CREATE UNIQUE INDEX idx_events_order ON events (tx_id, seq);
DROP INDEX idx_events_undispatched;

-- One row per consumer: its position in the outbox and which instance holds it (a lease, so
-- several instances may run dispatchers and exactly one delivers a consumer's events at a time).
CREATE TABLE event_consumers (
    name            TEXT PRIMARY KEY,
    cursor_tx       BIGINT NOT NULL,
    cursor_seq      BIGINT NOT NULL,
    owner           TEXT,
    lease_until     TIMESTAMPTZ,
    delivered       BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

-- The render consumer replaces the single-consumer dispatcher: it starts before the first event
-- that dispatcher had not handed out (a redelivered one finds its render job, or its execution
-- already rendered, and does nothing), or after the last event when it had handed out all.
INSERT INTO event_consumers (name, cursor_tx, cursor_seq, created_at, updated_at)
SELECT 'render', 0, COALESCE((SELECT MIN(seq) - 1 FROM events WHERE dispatched_at IS NULL), (SELECT MAX(seq) FROM events), 0), now(), now();

-- Events a consumer failed (retrying with backoff, or parked with its error once out of attempts)
-- and the later events of the same subject held behind them, so a subject's events stay in order.
CREATE TABLE event_pending (
    consumer        TEXT NOT NULL REFERENCES event_consumers(name) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    event_tx        BIGINT NOT NULL,
    event_seq       BIGINT NOT NULL,
    subject_id      TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_at         TIMESTAMPTZ NOT NULL,
    last_error      TEXT,
    parked_at       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX idx_event_pending_order ON event_pending (consumer, event_tx, event_seq);
CREATE INDEX idx_event_pending_subject ON event_pending (consumer, subject_id, event_tx, event_seq);
