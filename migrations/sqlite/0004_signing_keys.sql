-- Access-token signing keys (README, "Signing keys"). Only the public half is
-- kept: the private half is derived from JWT_REFRESH_SECRET and the kid, so a
-- leaked database yields no key that signs. A key's whole life follows from
-- its times and its successor's (auth/signing_keys.rs); nothing is updated.
-- `seq` orders the keys of one algorithm: two instances rotating at once both
-- try the same next `seq`, and only one insert succeeds.
CREATE TABLE signing_keys (
    algorithm  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    kid        TEXT    NOT NULL UNIQUE,
    public_key TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    signs_from INTEGER NOT NULL,
    PRIMARY KEY (algorithm, seq)
);
