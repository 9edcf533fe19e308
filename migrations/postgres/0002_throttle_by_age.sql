-- Housekeeping deletes throttle counters nobody has touched for a while.
CREATE INDEX throttle_by_age ON throttle (updated_at);
