-- Cross-process wake-ups are PostgreSQL's LISTEN/NOTIFY (see the postgres migration); SQLite is
-- one process's file, so there is nothing to announce. Kept so both dialects share versions.
SELECT 1;
