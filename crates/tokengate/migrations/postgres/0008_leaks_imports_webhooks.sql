-- Leak reports, imported keys and webhooks (SPEC §15).

-- Imported keys keep their original text: `format` is 'imported' and the digest is the
-- SHA-256 of that text (as for tokengate's own tokens).
ALTER TABLE api_tokens ADD COLUMN format TEXT NOT NULL DEFAULT 'tokengate';
ALTER TABLE api_tokens ADD COLUMN external_id TEXT;
-- `token.expiring` is raised once per token.
ALTER TABLE api_tokens ADD COLUMN expiring_notified_at BIGINT;
ALTER TABLE oauth_clients ADD COLUMN disabled_at BIGINT;
ALTER TABLE audit_log ADD COLUMN detail TEXT;

-- Secrets reported leaked, by digest: a rotated Client-Token is no longer marked.
CREATE TABLE leaked_secrets (
    digest BYTEA PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    account_id TEXT,
    leaked_at BIGINT NOT NULL,
    url TEXT,
    source TEXT
);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_account ON webhooks(account_id, id);

-- One row per (event, webhook), written in the transaction that raised the event.
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT,
    given_up_at BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at) WHERE delivered_at IS NULL AND given_up_at IS NULL;

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    outbox_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status BIGINT,
    error TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, id);
