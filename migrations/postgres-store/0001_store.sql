-- A server's own store in PostgreSQL (`--db postgres://...`): the tables of the SQLite
-- migrations as they stand after 0010, in one schema per server (`eunomia_<node>`).
-- Times are Unix nanoseconds; JSON kept as text where the server only writes and reads
-- it back whole, JSONB where questions look inside it.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tracker TEXT NOT NULL,
    label TEXT,
    status TEXT NOT NULL,
    store TEXT NOT NULL,
    filter TEXT NOT NULL,
    config TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    ended_at BIGINT,
    event_count BIGINT NOT NULL,
    lost_count BIGINT NOT NULL,
    error TEXT,
    memory_snapshot TEXT
);
CREATE INDEX sessions_started ON sessions (started_at, id);
CREATE INDEX sessions_status_started ON sessions (status, started_at, id);

-- The shape of the fleet's `fleet_events`, so that one query engine answers both: the
-- common fields as columns, every field in `data`, and the node that recorded it.
-- No foreign key to sessions, as in SQLite: deleting a session deletes its events.
CREATE TABLE events (
    -- Arrival order: the pagination cursor of a session's events.
    id BIGSERIAL PRIMARY KEY,
    node TEXT NOT NULL,
    session_id TEXT NOT NULL,
    seq BIGINT,
    ts BIGINT NOT NULL,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    pid BIGINT NOT NULL,
    ppid BIGINT NOT NULL,
    comm TEXT NOT NULL,
    cgroup_id BIGINT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX events_session ON events (session_id, id);

CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    session_id TEXT
);

CREATE TABLE alerts (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
    last_ts BIGINT NOT NULL,
    count BIGINT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    -- INFO 0 .. CRITICAL 4, for "at least this severe".
    severity_rank BIGINT NOT NULL,
    technique TEXT NOT NULL,
    technique_name TEXT NOT NULL DEFAULT '',
    tactic TEXT NOT NULL,
    tracker TEXT NOT NULL,
    session_id TEXT,
    pid BIGINT NOT NULL,
    ppid BIGINT NOT NULL,
    comm TEXT NOT NULL,
    exe TEXT,
    container_id TEXT,
    container_name TEXT,
    container_image TEXT,
    output TEXT NOT NULL,
    -- The event that raised it first, as JSON.
    event TEXT NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (ts);
CREATE INDEX alerts_by_rule ON alerts (rule, ts);

CREATE TABLE guard (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    rules TEXT NOT NULL,  -- JSON list of rule ids ("*": all)
    started_ts BIGINT NOT NULL
);

CREATE TABLE baselines (
    id BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,      -- container | image
    target TEXT NOT NULL,     -- the container's name or the image
    started_ts BIGINT NOT NULL,
    duration_secs BIGINT NOT NULL,
    state TEXT NOT NULL,
    -- JSON: {execs, syscalls, connects, write_dirs}, each a sorted list of strings.
    profile TEXT,
    events BIGINT NOT NULL DEFAULT 0,
    lost BIGINT NOT NULL DEFAULT 0,
    error TEXT
);

CREATE TABLE seccomp_profiles (
    name TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    -- what it came from: `sessions: <id>, <id>` or `given`
    source TEXT NOT NULL,
    saved_ts BIGINT NOT NULL
);
