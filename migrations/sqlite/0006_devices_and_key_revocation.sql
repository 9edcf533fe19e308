-- Device cookies (README, "The device cookie"). A device cookie exempts its
-- holder from the account's lockout only while its row is here and was
-- written under the account's current credentials version: a password change,
-- reset or disable (each moves the version) ends every device issued before.
-- Each account keeps its most recently used devices only (the oldest beyond
-- the cap are deleted when another is added), so cookies cannot be stockpiled.
CREATE TABLE devices (
    user_id             INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id                  TEXT    NOT NULL,
    credentials_version INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    last_used_at        INTEGER NOT NULL,
    PRIMARY KEY (user_id, id)
);

-- A signing key withdrawn by `latchkey keys revoke` (README, "Signing keys"):
-- it neither signs, verifies nor is published from then on. The row stays, so
-- the keys around it keep the times their lives follow from.
ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER;
