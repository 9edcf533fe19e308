-- The same as migrations/sqlite/0005_session_controls.sql, in PostgreSQL's words.
ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ADD COLUMN remember BOOLEAN NOT NULL DEFAULT TRUE;

-- Erasing an account finds its rows by index (see the SQLite migration).
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX audit_events_by_username ON audit_events (username) WHERE username IS NOT NULL;
