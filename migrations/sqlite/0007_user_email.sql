-- An account's email address (README, "Email addresses"): optional, stored
-- lower-cased, and usable to sign in only once verified. Unverified, any
-- number of accounts may name one address, so registering reveals nothing
-- about who else uses it; verified, it belongs to one account alone.
ALTER TABLE users ADD COLUMN email TEXT;
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX users_verified_email ON users (email) WHERE email_verified = 1;
