-- The session a mutation created or acted on, so the audit trail names it.
ALTER TABLE audit ADD COLUMN session_id TEXT;
