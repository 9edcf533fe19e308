-- The same as migrations/sqlite/0005_session_controls.sql, in PostgreSQL's words.
ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ADD COLUMN remember BOOLEAN NOT NULL DEFAULT TRUE;
