-- Cross-process wake-ups: every statement that inserts jobs announces their queues on the
-- `airwave_jobs` channel (delivered at commit, de-duplicated per transaction); idle workers in
-- other processes LISTEN and fetch at once instead of at their next poll.
CREATE FUNCTION airwave_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('airwave_jobs', q.queue) FROM (SELECT DISTINCT queue FROM new_jobs) AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION airwave_jobs_notify();
