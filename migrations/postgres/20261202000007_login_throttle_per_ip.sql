-- Login throttling per (address, client IP) and per client IP, instead of per address alone
-- (which let anyone keep any account locked). `key` is `a:<email>|<ip>` or `i:<ip>`;
-- `email` is set on the first kind so a reset or a login can clear an address's keys.
-- Attempts are counted before the password is checked, atomically, so parallel guesses cannot
-- all pass the check. Existing lockouts are dropped with the old table.
DROP TABLE login_throttle;
CREATE TABLE login_throttle (
    key             TEXT PRIMARY KEY,
    email           TEXT,
    failures        INTEGER NOT NULL,
    window_start    TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ
);
CREATE INDEX idx_login_throttle_email ON login_throttle(email);
