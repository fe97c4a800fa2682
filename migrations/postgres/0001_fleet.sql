-- The fleet's shared tables: sessions run on several nodes, each node's part, the nodes'
-- heartbeats and the events the parts recorded. Times are Unix nanoseconds.
CREATE TABLE fleet_nodes (
    node TEXT PRIMARY KEY,
    -- The last heartbeat, in the database's clock: a node silent for a few seconds is
    -- taken for gone.
    last_seen BIGINT NOT NULL,
    started_at BIGINT NOT NULL
);

CREATE TABLE fleet_sessions (
    id TEXT PRIMARY KEY,
    tracker TEXT NOT NULL,
    label TEXT,
    -- What each node starts: tracker, filters, configuration, rules (JSON).
    request JSONB NOT NULL,
    origin TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    stop_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX fleet_sessions_started ON fleet_sessions (started_at);

CREATE TABLE fleet_parts (
    session_id TEXT NOT NULL REFERENCES fleet_sessions (id) ON DELETE CASCADE,
    node TEXT NOT NULL,
    -- PENDING (not yet picked up), STARTING, RUNNING, COMPLETED, STOPPED, FAILED,
    -- INTERRUPTED (the node went silent or restarted), NO_ANSWER (never picked it up).
    status TEXT NOT NULL,
    local_id TEXT,
    started_at BIGINT,
    ended_at BIGINT,
    event_count BIGINT NOT NULL DEFAULT 0,
    lost_count BIGINT NOT NULL DEFAULT 0,
    shipped_count BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (session_id, node)
);
-- A node looks for its pending parts on every notification and every second.
CREATE INDEX fleet_parts_node_status ON fleet_parts (node, status);

-- Every node's events of fleet sessions. Hash-partitioned by session: a session's
-- aggregate reads one partition's index range, and removing a session touches one
-- partition. (Time partitions pay off only once retention drops whole days.)
CREATE TABLE fleet_events (
    -- Arrival order across nodes: the pagination cursor of a fleet session's events.
    id BIGSERIAL NOT NULL,
    session_id TEXT NOT NULL,
    node TEXT NOT NULL,
    -- The event's id in the node's own store: the node ships in that order, and
    -- (session, node, local_id) makes a batch shipped twice after a lost reply harmless.
    local_id BIGINT NOT NULL,
    seq BIGINT,
    ts BIGINT NOT NULL,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    pid BIGINT NOT NULL,
    ppid BIGINT NOT NULL,
    comm TEXT NOT NULL,
    cgroup_id BIGINT NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (session_id, node, local_id)
) PARTITION BY HASH (session_id);
CREATE TABLE fleet_events_p0 PARTITION OF fleet_events FOR VALUES WITH (MODULUS 4, REMAINDER 0);
CREATE TABLE fleet_events_p1 PARTITION OF fleet_events FOR VALUES WITH (MODULUS 4, REMAINDER 1);
CREATE TABLE fleet_events_p2 PARTITION OF fleet_events FOR VALUES WITH (MODULUS 4, REMAINDER 2);
CREATE TABLE fleet_events_p3 PARTITION OF fleet_events FOR VALUES WITH (MODULUS 4, REMAINDER 3);
