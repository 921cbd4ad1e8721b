-- The operations stream's replay log: every event the console receives over
-- `GET /api/ops/stream` has a row here, so a client resumes with `Last-Event-ID` across reconnects,
-- restarts and instances. Bounded (newest AIRWAVE_OPS_STREAM_KEEP events, at most 24 hours).
CREATE TABLE ops_events (
    id          BIGSERIAL PRIMARY KEY,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_ops_events_created ON ops_events(created_at);

-- What the background health checker observed, per component and run (for history charts).
CREATE TABLE health_samples (
    component       TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pass', 'warn', 'fail')),
    observed_value  DOUBLE PRECISION,
    observed_unit   TEXT,
    output          TEXT,
    PRIMARY KEY (component, at)
);
CREATE INDEX idx_health_samples_at ON health_samples(at);
