-- Credential changes win every race (README, "Credential changes and races"):
-- password changes and disabling bump the user's credentials version, and a
-- session carries the version it was created under. A session is created and
-- rotated only while the two agree.
ALTER TABLE users ADD COLUMN credentials_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN credentials_version INTEGER NOT NULL DEFAULT 0;

-- The least recently used live session goes first when a user has too many.
CREATE INDEX sessions_live_by_user_last_use ON sessions (user_id, last_used_at) WHERE revoked_at IS NULL;

-- Repeated rejections from one address are aggregated: one row a minute, with a count.
ALTER TABLE audit_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
