-- The same schema as migrations/sqlite/0001_init.sql, in PostgreSQL's words.
-- Times are Unix seconds (BIGINT, so they decode as i64); ids of sessions are
-- random strings, compared byte by byte (COLLATE "C") as SQLite does.

CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'user',
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    disabled_at   BIGINT
);

CREATE TABLE sessions (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    user_id             BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    generation          BIGINT  NOT NULL DEFAULT 0,
    rotated_at          BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    last_used_at        BIGINT  NOT NULL,
    idle_expires_at     BIGINT  NOT NULL,
    absolute_expires_at BIGINT  NOT NULL,
    revoked_at          BIGINT,
    revoked_reason      TEXT,
    user_agent          TEXT,
    ip                  TEXT
);

-- "This user's live sessions" (listing, revoke-all) reads only live rows.
CREATE INDEX sessions_live_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
-- Housekeeping deletes by absolute expiry.
CREATE INDEX sessions_by_absolute_expiry ON sessions (absolute_expires_at);

CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    user_id    BIGINT,
    username   TEXT,
    session_id TEXT,
    ip         TEXT,
    request_id TEXT,
    detail     TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_user ON audit_events (user_id, at);

-- Login throttling: failures per key (account+address, address, account).
CREATE TABLE throttle (
    key           TEXT   PRIMARY KEY,
    failures      BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL
);
