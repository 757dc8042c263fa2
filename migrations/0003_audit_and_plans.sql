-- Issue 15: the per-person audit trail and the plans of stopped runs (for `approve`).
-- Never edit this file once shipped (its checksum is recorded in every DB): add a new one.

-- Every operation sent, one row per person and run. Field names only, never values.
CREATE TABLE audit (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fields      TEXT NOT NULL,   -- JSON array of field names
    status      TEXT NOT NULL,   -- "ok" or "failed"
    http_status INTEGER,
    approval    TEXT
);
CREATE INDEX audit_by_person ON audit (connector, external_id, at);
CREATE INDEX audit_by_time ON audit (at);

-- The plan of a run a safeguard stopped, and what it was made from.
CREATE TABLE plans (
    run_id            TEXT PRIMARY KEY,
    connector         TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    file              TEXT NOT NULL,   -- JSON FileFingerprint
    state_fingerprint TEXT NOT NULL,
    digest            TEXT NOT NULL,
    rule              TEXT NOT NULL,
    message           TEXT NOT NULL,
    dry_run           INTEGER NOT NULL,
    operations        TEXT NOT NULL,   -- JSON array of changes::PersonOp (the first 10 000)
    operations_left_out INTEGER NOT NULL,
    approval          TEXT,            -- JSON report::Approval, once approved
    applied_by        TEXT             -- the run that applied it
);
CREATE INDEX plans_by_connector ON plans (connector, created_at);
