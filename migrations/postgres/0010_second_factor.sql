-- A second factor (README, "Second factor"): an account's TOTP secret,
-- sealed (never the secret itself: a copy of the database gives no working
-- one), pending until a code confirms it; the last time step a code was
-- accepted for, so that no code works twice; the recovery codes, hashed; and
-- the logins whose password was checked and that wait for their second step.
CREATE TABLE totp_factors (
    user_id      BIGINT  PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       BYTEA   NOT NULL,
    confirmed_at BIGINT,
    last_step    BIGINT  NOT NULL DEFAULT 0,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE recovery_codes (
    user_id BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    BYTEA   NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE pending_logins (
    hash                BYTEA   PRIMARY KEY,
    user_id             BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credentials_version BIGINT  NOT NULL,
    remember            BOOLEAN NOT NULL,
    expires_at          BIGINT  NOT NULL,
    attempts            BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX pending_logins_by_expiry ON pending_logins (expires_at);
