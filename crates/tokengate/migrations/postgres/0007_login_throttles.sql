-- Dashboard login throttles, in the store so that every node counts the same failures
-- (a per-node counter multiplies an attacker's guesses by the number of nodes). Keys:
-- `email:<address>`, `ip:<client address>`, `otp:<member id>`.
CREATE TABLE login_throttles (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    locked_until BIGINT,
    updated_at BIGINT NOT NULL
);
-- Wrong one-time codes given to a login waiting for its second factor (5 end it).
ALTER TABLE sessions ADD COLUMN mfa_failures BIGINT NOT NULL DEFAULT 0;
