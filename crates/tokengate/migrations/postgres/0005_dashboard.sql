-- Dashboard: server-side sessions (the cookie holds a random id; only its digest is
-- stored) and members' optional TOTP two-factor login (secret sealed under the master key).
CREATE TABLE sessions (
    id_digest BYTEA PRIMARY KEY,
    member_id TEXT NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    -- 1 until the one-time code of a two-factor login was given.
    mfa_pending BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_member ON sessions(member_id);

ALTER TABLE members ADD COLUMN totp_sealed BYTEA;
-- The last accepted TOTP time step: a code is never accepted twice.
ALTER TABLE members ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
