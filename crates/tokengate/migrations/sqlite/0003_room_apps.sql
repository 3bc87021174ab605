-- Room apps (token04): the server secret is stored sealed under the master key.
ALTER TABLE accounts ADD COLUMN max_room_token_ttl_seconds INTEGER NOT NULL DEFAULT 86400;

CREATE TABLE room_apps (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    app_id INTEGER NOT NULL,
    secret_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, app_id)
);
CREATE INDEX room_apps_app ON room_apps(app_id);
