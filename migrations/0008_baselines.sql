-- Learned baselines: what a container (or an image's containers) did while learning. A
-- row is written when learning starts (state `learning`) and completed when it ends
-- (`ready` with its profile, or `failed` with the error); a server that stops meanwhile
-- finds it `interrupted` when it starts again.
CREATE TABLE baselines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,      -- container | image
    target TEXT NOT NULL,     -- the container's name or the image
    started_ts INTEGER NOT NULL,
    duration_secs INTEGER NOT NULL,
    state TEXT NOT NULL,
    -- JSON: {execs, syscalls, connects, write_dirs}, each a sorted list of strings.
    profile TEXT,
    events INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
