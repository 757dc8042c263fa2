-- Issue 29: the snapshot becomes a rowid table with its key in an index. As a WITHOUT ROWID
-- table, each user's whole row (≈ 350 bytes, most of it the content JSON) sat in the key's
-- B-tree: a push's upserts arrive in outcome order, several key ranges at once, and each
-- insert into a full leaf split it and rewrote its neighbours. A 1M first sync wrote ≈ 7 GB
-- to disk for a 600 MB database (/proc/PID/io). Rows appended by rowid and the key in small
-- index entries write a fraction of that (BENCHMARKS.md, issue 29, fifth pass).
--
-- `snapshot_key` is the upserts' conflict target and the look-ups' index; `snapshot_listing`
-- covers what the snapshot load reads (`sqlite.rs`, `load_chunk`), so the load stays a scan
-- of one index in key order, without a look-up into the table per user.
CREATE TABLE snapshot_rows (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    platform_id TEXT NOT NULL,
    hash        BLOB NOT NULL,
    active      INTEGER NOT NULL,
    content     TEXT NOT NULL
);
INSERT INTO snapshot_rows (connector, external_id, platform_id, hash, active, content)
    SELECT connector, external_id, platform_id, hash, active, content FROM snapshot ORDER BY connector, external_id;
DROP TABLE snapshot;
ALTER TABLE snapshot_rows RENAME TO snapshot;
CREATE UNIQUE INDEX snapshot_key ON snapshot (connector, external_id);
CREATE INDEX snapshot_listing ON snapshot (connector, external_id, platform_id, hash, active);
