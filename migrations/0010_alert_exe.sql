-- The alerted process's executable (null when it could not be read: the process had
-- already gone) and the MITRE technique's name beside its id.
ALTER TABLE alerts ADD COLUMN exe TEXT;
ALTER TABLE alerts ADD COLUMN technique_name TEXT NOT NULL DEFAULT '';
