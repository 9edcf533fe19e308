-- An account's email address (README, "Email addresses"): optional, stored
-- lower-cased, and usable to sign in only once verified. Unverified, any
-- number of accounts may name one address, so registering reveals nothing
-- about who else uses it; verified, it belongs to one account alone.
ALTER TABLE users ADD COLUMN email TEXT COLLATE "C";
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX users_verified_email ON users (email) WHERE email_verified;
