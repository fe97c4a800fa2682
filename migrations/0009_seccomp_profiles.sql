-- Seccomp profiles kept by name: advised from sessions or given whole. The profile is the
-- OCI JSON (runtime-spec config-linux.md) as `docker run --security-opt seccomp=` takes it.
CREATE TABLE seccomp_profiles (
    name TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    -- what it came from: `sessions: <id>, <id>` or `given`
    source TEXT NOT NULL,
    saved_ts INTEGER NOT NULL
);
