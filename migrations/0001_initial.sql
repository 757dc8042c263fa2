-- The schema that rostersync's own migrations created as "version 1" before sqlx's
-- migrator took over: a state DB from then has exactly these tables, and opening it marks
-- this migration applied instead of running it (src/state/sqlite.rs, `adopt_legacy`).
-- Never edit this file once shipped (its checksum is recorded in every DB): add a new one.

CREATE TABLE snapshot (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    hash        BLOB NOT NULL,
    active      INTEGER NOT NULL,
    content     TEXT NOT NULL,
    PRIMARY KEY (connector, external_id)
) WITHOUT ROWID;
CREATE TABLE last_file (
    connector TEXT PRIMARY KEY,
    path      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mtime     TEXT,
    sha256    TEXT NOT NULL,
    synced_at TEXT NOT NULL
);
CREATE TABLE runs (
    run_id     TEXT PRIMARY KEY,
    connector  TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    report     TEXT
);
CREATE INDEX runs_by_connector ON runs (connector, started_at);
CREATE TABLE leases (
    connector   TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- The old builds' version marker, so a rollback to one of them still opens this DB (its
-- schema is theirs). A later migration that changes what they read must insert a higher
-- version here: they refuse a DB above the version they know.
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
