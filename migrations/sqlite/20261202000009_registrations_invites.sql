-- Registration is confirmed by e-mail before an account exists, so that registering reveals
-- nothing about which addresses have accounts; only the token's hash is stored.
CREATE TABLE registrations (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    used_at         TEXT
);
CREATE INDEX idx_registrations_email ON registrations(email);

-- Adding a member invites an e-mail address; the membership exists once the owner of that
-- address accepts, so an invitation reveals nothing about which addresses have accounts.
CREATE TABLE client_invites (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES clients(id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    invited_by      TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    accepted_at     TEXT,
    revoked_at      TEXT
);
CREATE INDEX idx_client_invites_client_id ON client_invites(client_id);
