-- The standing guard while it runs: the rules it was started with, so that a restarted
-- server starts it again. One row at most; stopGuard deletes it.
CREATE TABLE guard (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    rules TEXT NOT NULL,  -- JSON list of rule ids ("*": all)
    started_ts INTEGER NOT NULL
);
