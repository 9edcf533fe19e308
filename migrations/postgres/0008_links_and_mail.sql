-- Links sent by mail (README, "Account recovery"): a password reset or an
-- address to verify. Only the SHA-256 of each link's token is kept, so the
-- database alone gives no usable link; `id` is what the mail worker rebuilds
-- the token from, with a key the database does not hold. A reset link
-- counts only while the account's credentials version is the one it was
-- issued under: any password change, reset or disable ends every other one.
CREATE TABLE links (
    id                  TEXT    COLLATE "C" PRIMARY KEY,
    hash                BYTEA   NOT NULL UNIQUE,
    kind                TEXT    NOT NULL,
    user_id             BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email               TEXT,
    credentials_version BIGINT  NOT NULL,
    created_at          BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    used_at             BIGINT
);
CREATE INDEX links_by_user ON links (user_id);
CREATE INDEX links_by_expiry ON links (expires_at);

-- Mail waiting to be sent (README, "Mail"): written in the request's
-- transaction, sent by the worker after it. A row is claimed by a lease
-- (`leased_until`) and settled only by the claim that holds it (`attempts`
-- fences a worker whose lease ran out); a sent mail's row is deleted.
CREATE TABLE mail_outbox (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    user_id         BIGINT  REFERENCES users (id) ON DELETE CASCADE,
    link_id         TEXT,
    created_at      BIGINT  NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    leased_until    BIGINT  NOT NULL DEFAULT 0,
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE failed_at IS NULL;
