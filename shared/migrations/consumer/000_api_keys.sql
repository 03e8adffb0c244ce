-- API keys as this service knows them, folded from crm.keys. Only the SHA-256 of a token is
-- kept. A revocation may be folded before its issue (a replay from another position), so
-- every column but the id may be empty until the issue arrives.
CREATE TABLE api_keys (
    key_id        text PRIMARY KEY,
    name          text,
    scopes        text[],
    token_sha256  text,
    rate_limit    double precision,
    issued_at     timestamptz,
    revoked_at    timestamptz
);
