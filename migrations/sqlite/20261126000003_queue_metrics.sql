-- Per-queue, per-minute job metrics. Each process keeps its own counts for the minute in memory
-- and writes them here (the whole minute's values, so a rewrite is idempotent); readers add up
-- the rows of every process. Histograms are JSON arrays of counts over fixed millisecond bounds
-- (queue::metrics::BOUNDS_MS). Kept for 48 hours.
CREATE TABLE queue_metrics (
    queue       TEXT NOT NULL,
    minute      TEXT NOT NULL,
    source      TEXT NOT NULL,
    enqueued    INTEGER NOT NULL DEFAULT 0,
    completed   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    dead        INTEGER NOT NULL DEFAULT 0,
    wait_hist   TEXT NOT NULL,
    run_hist    TEXT NOT NULL,
    PRIMARY KEY (queue, minute, source)
);
CREATE INDEX idx_queue_metrics_minute ON queue_metrics(minute);
