-- API keys (tgk_) and personal access tokens (tgp_). Only digests are stored.
ALTER TABLE accounts ADD COLUMN max_token_lifetime_seconds BIGINT NOT NULL DEFAULT 7776000;

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('api_key', 'personal')),
    member_id TEXT,
    name TEXT NOT NULL,
    digest BYTEA NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    expires_at BIGINT,
    ip_allowlist TEXT NOT NULL DEFAULT '[]',
    rate_limit BIGINT,
    rate_window_seconds BIGINT,
    instance_ids TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    -- When the token stops working: at revocation, or the end of a rotation's grace period.
    revoked_at BIGINT,
    rotated_to TEXT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_account ON api_tokens(account_id, id);
CREATE INDEX api_tokens_member ON api_tokens(member_id);
