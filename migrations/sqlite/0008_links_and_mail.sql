-- Links sent by mail (README, "Account recovery"): a password reset or an
-- address to verify. Only the SHA-256 of each link's token is kept, so the
-- database alone gives no usable link; `id` is what the mail worker rebuilds
-- the token from, with a key the database does not hold. A reset link
-- counts only while the account's credentials version is the one it was
-- issued under: any password change, reset or disable ends every other one.
CREATE TABLE links (
    id                  TEXT    PRIMARY KEY,
    hash                BLOB    NOT NULL UNIQUE,
    kind                TEXT    NOT NULL,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email               TEXT,
    credentials_version INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    used_at             INTEGER
);
CREATE INDEX links_by_user ON links (user_id);
CREATE INDEX links_by_expiry ON links (expires_at);

-- Mail waiting to be sent (README, "Mail"): written in the request's
-- transaction, sent by the worker after it. A row is claimed by a lease
-- (`leased_until`) and settled only by the claim that holds it (`attempts`
-- fences a worker whose lease ran out); a sent mail's row is deleted.
CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    user_id         INTEGER REFERENCES users (id) ON DELETE CASCADE,
    link_id         TEXT,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    leased_until    INTEGER NOT NULL DEFAULT 0,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE failed_at IS NULL;
