-- Alerts the security analyzer raised. The same rule, process and output within the
-- dedup window count up one row (`count`, `last_ts`) rather than adding rows.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    count INTEGER NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    -- INFO 0 .. CRITICAL 4, for "at least this severe".
    severity_rank INTEGER NOT NULL,
    technique TEXT NOT NULL,
    tactic TEXT NOT NULL,
    tracker TEXT NOT NULL,
    session_id TEXT,
    pid INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    comm TEXT NOT NULL,
    container_id TEXT,
    container_name TEXT,
    container_image TEXT,
    output TEXT NOT NULL,
    -- The event that raised it first, as JSON.
    event TEXT NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (ts);
CREATE INDEX alerts_by_rule ON alerts (rule, ts);
