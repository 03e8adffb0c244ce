-- A key's expiry (from its issue event) and its last use as this service saw it (written by
-- the service at most once a minute per key and instance; not folded, so a rebuild starts it
-- afresh).
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz, ADD COLUMN last_used_at timestamptz;
