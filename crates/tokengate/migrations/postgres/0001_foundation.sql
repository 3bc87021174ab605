-- tokengate foundation schema (PostgreSQL). Times are Unix milliseconds; ids are UUIDv7 text.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    digest BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    ip_allowlist TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL
);

CREATE TABLE members (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX members_account ON members(account_id);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    upstream_url TEXT NOT NULL,
    token_digest BYTEA NOT NULL,
    rules TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL
);
CREATE INDEX instances_account ON instances(account_id);

CREATE TABLE security_tokens (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('disabled', 'active')),
    digest BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    previous_digest BYTEA,
    previous_valid_until BIGINT
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    ip TEXT
);
CREATE INDEX audit_log_account ON audit_log(account_id, id);

CREATE TABLE usage_counts (
    account_id TEXT NOT NULL,
    token_id TEXT NOT NULL DEFAULT '',
    bucket_start BIGINT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (account_id, token_id, kind, bucket_start, reason)
);
