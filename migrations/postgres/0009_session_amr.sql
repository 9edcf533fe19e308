-- How each session's user proved who they are (RFC 8176 method values,
-- space-separated): access tokens carry it as `amr`, unchanged by rotation.
-- Sessions before this were all signed in with a password.
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
