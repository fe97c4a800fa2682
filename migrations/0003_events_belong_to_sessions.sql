-- Events and their counts belong to a session: the database refuses an event of a
-- session it does not hold and removes a session's events with it, so no path (a
-- delete racing a stop, a crash between statements) can leave rows that retention never
-- finds. The writer stores a session before any of its events, so a refused batch is a
-- bug made loud (the session fails) rather than rows no one can see.
-- SQLite adds a foreign key only by rebuilding the table; rows of unknown sessions are
-- dropped first.
DELETE FROM events WHERE session_id NOT IN (SELECT id FROM sessions);
DELETE FROM event_counts WHERE session_id NOT IN (SELECT id FROM sessions);

CREATE TABLE events_owned (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    ts INTEGER NOT NULL,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    comm TEXT NOT NULL,
    cgroup_id INTEGER NOT NULL,
    data TEXT NOT NULL
);
INSERT INTO events_owned SELECT id, session_id, ts, tracker, kind, pid, ppid, comm, cgroup_id, data FROM events;
DROP TABLE events;
ALTER TABLE events_owned RENAME TO events;
CREATE INDEX events_session ON events (session_id);

CREATE TABLE event_counts_owned (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    tracker TEXT NOT NULL,
    kind TEXT NOT NULL,
    comm TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (session_id, tracker, kind, comm)
) WITHOUT ROWID;
INSERT INTO event_counts_owned SELECT session_id, tracker, kind, comm, n FROM event_counts;
DROP TABLE event_counts;
ALTER TABLE event_counts_owned RENAME TO event_counts;
