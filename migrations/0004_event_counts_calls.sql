-- COUNT counts calls, not records: a syscall `totals` record stands for `count` calls and
-- a files `open` record for `opens` (both counted in the kernel per interval). The writer
-- now keeps each group's calls beside its records; stored sessions get theirs from the
-- events they hold.
ALTER TABLE event_counts ADD COLUMN calls INTEGER NOT NULL DEFAULT 0;
UPDATE event_counts SET calls = n;
UPDATE event_counts SET calls = (
    SELECT CAST(TOTAL(COALESCE(e.data ->> '$.count', 1)) AS INTEGER) FROM events e
    WHERE e.session_id = event_counts.session_id AND e.tracker = event_counts.tracker
      AND e.kind = event_counts.kind AND e.comm = event_counts.comm)
WHERE tracker = 'syscall';
UPDATE event_counts SET calls = (
    SELECT CAST(TOTAL(COALESCE(e.data ->> '$.opens', 1)) AS INTEGER) FROM events e
    WHERE e.session_id = event_counts.session_id AND e.tracker = event_counts.tracker
      AND e.kind = event_counts.kind AND e.comm = event_counts.comm)
WHERE tracker = 'files';
