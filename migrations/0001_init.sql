-- Sessions, their events, and the audit trail. Times are Unix nanoseconds.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    tracker TEXT NOT NULL,
    label TEXT,
    status TEXT NOT NULL,
    store TEXT NOT NULL,
    filter TEXT NOT NULL,
    config TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ends_at INTEGER NOT NULL,
    ended_at INTEGER,
    event_count INTEGER NOT NULL,
    lost_count INTEGER NOT NULL,
    error TEXT,
    memory_snapshot TEXT
);
-- Newest first, with or without a status filter.
CREATE INDEX sessions_started ON sessions (started_at, id);
CREATE INDEX sessions_status_started ON sessions (status, started_at, id);

-- Common fields are columns (fast filters and groups); every field is in `data` (JSON).
-- No foreign key to sessions: one bad row must not fail a whole batch of other sessions'
-- events, and delete_session removes a session's events itself.
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    comm TEXT NOT NULL,
    cgroup_id INTEGER NOT NULL,
    data TEXT NOT NULL
);
-- (session_id, id): every index entry ends with the rowid, which `id` is. Appending to it
-- is cheap; an index on (session_id, kind, comm) halved the write rate (inserts scattered
-- over its pages), so event_counts serves those groupings instead.
CREATE INDEX events_session ON events (session_id);

-- Events per (session, tracker, kind, comm), kept by the writer in the transactions that
-- insert the events: COUNTs grouped and filtered by those fields read this instead of
-- the events, and totals for retention need no scan of millions of rows.
CREATE TABLE event_counts (
    session_id TEXT NOT NULL,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    comm TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (session_id, tracker, kind, comm)
) WITHOUT ROWID;

CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
