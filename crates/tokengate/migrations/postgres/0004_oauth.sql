-- OAuth 2.0: signing keys (private halves sealed under the master key), clients (secret
-- digests only), revoked access-token ids, and trusted identity providers (SSO).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL CHECK (alg IN ('EdDSA', 'ES256', 'RS256')),
    private_sealed BYTEA NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set when a newer key takes over; the key then only verifies, until publish_until.
    retired_at BIGINT,
    publish_until BIGINT
);

CREATE TABLE oauth_clients (
    client_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_digest BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX oauth_clients_account ON oauth_clients(account_id, client_id);

CREATE TABLE revoked_jtis (
    jti TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_jtis_expiry ON revoked_jtis(expires_at);

CREATE TABLE trusted_issuers (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    jwks_uri TEXT NOT NULL,
    audience TEXT NOT NULL,
    scopes_claim TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (account_id, issuer)
);
