-- One row: this deployment's random id, made by the first node that opens the store and
-- shared by every node on it. Forwarded requests carry it in `Via`, so that a request
-- that comes back to any node of the deployment is recognised as a loop.
CREATE TABLE deployment (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL
);
