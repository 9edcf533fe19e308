-- A second factor (README, "Second factor"): an account's TOTP secret,
-- sealed (never the secret itself: a copy of the database gives no working
-- one), pending until a code confirms it; the last time step a code was
-- accepted for, so that no code works twice; the recovery codes, hashed; and
-- the logins whose password was checked and that wait for their second step.
CREATE TABLE totp_factors (
    user_id      INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       BLOB    NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);

CREATE TABLE recovery_codes (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    BLOB    NOT NULL,
    used_at INTEGER,
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE pending_logins (
    hash                BLOB    PRIMARY KEY,
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credentials_version INTEGER NOT NULL,
    remember            INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX pending_logins_by_expiry ON pending_logins (expires_at);
