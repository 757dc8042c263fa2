-- Issue 27: since when each person has been absent from the file, for `[sync]
-- deactivate_after` (see migrations/0005_absences.sql). `since` is RFC 3339 text, as
-- SQLite keeps it, so both stores share the statements (src/state/absences.rs); it is the
-- run's clock, not the database's: the grace is measured on the clock the run plans with.
CREATE TABLE absences (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    since       TEXT NOT NULL,
    PRIMARY KEY (connector, external_id)
);
