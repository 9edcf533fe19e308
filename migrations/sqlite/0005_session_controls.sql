-- Session controls (README, "How sessions work"). `auth_time` is when the
-- password was last verified for the session: at its login, then at each
-- `POST /reauthenticate` (RFC 9068 §2.2.1). Sessions begun before this
-- migration were last verified at their login. `remember` is the login's
-- "Keep me signed in": without it the refresh cookie lasts as long as the
-- browser, and the session ends sooner when unused.
ALTER TABLE sessions ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET auth_time = created_at;
ALTER TABLE sessions ADD COLUMN remember INTEGER NOT NULL DEFAULT 1;

-- Erasing an account (README, "Deleting an account") finds its rows by
-- index, never by scanning: every session of the user, live or not, and the
-- audit events that name them.
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX audit_events_by_username ON audit_events (username) WHERE username IS NOT NULL;
