-- Wrong TOTP codes in a row for an account's factor (README, "Second
-- factor"): counted before each code is checked, back to 0 when one is
-- accepted, and never decaying with time, so that at most 100 guesses are
-- ever checked (NIST SP 800-63B §5.2.2) however slowly they come.
ALTER TABLE totp_factors ADD COLUMN failed_codes INTEGER NOT NULL DEFAULT 0;
