-- A user can be disabled (by an admin): every credential stops at once, and a disabled user
-- cannot log in; the reason is kept for the audit trail and the admin list.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
ALTER TABLE users ADD COLUMN disabled_reason TEXT;
