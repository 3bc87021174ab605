-- Cluster-wide rate limits (PostgreSQL deployments with several nodes; unused on one
-- SQLite node). Every node admits from a grant of its own and, about every 100 ms and
-- one node at a time, publishes what it used and takes its next grant, so that the
-- grants of one token's window never add up to more than its limit.
CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    -- Milliseconds since the epoch on the store's clock.
    seen_at BIGINT NOT NULL
);
CREATE TABLE rate_grants (
    token_id TEXT NOT NULL,
    rate_limit BIGINT NOT NULL,
    window_seconds BIGINT NOT NULL,
    -- Unix seconds; windows are fixed and aligned to multiples of window_seconds.
    window_start BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    granted BIGINT NOT NULL,
    used BIGINT NOT NULL,
    -- Requests the node saw for this window since its previous reconciliation.
    demand BIGINT NOT NULL,
    PRIMARY KEY (token_id, rate_limit, window_seconds, window_start, node_id)
);
CREATE INDEX rate_grants_window_end ON rate_grants ((window_start + window_seconds));
