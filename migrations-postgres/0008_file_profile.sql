-- Issue 24: per connector, how full each mapped column of the last file synced in full was
-- (SQLite's migrations/0008, same shape; src/state/profile.rs). `synced_at` is RFC 3339 text
-- as in SQLite, so both stores share the statements.
CREATE TABLE file_profiles (
    connector text COLLATE "C" PRIMARY KEY,
    columns   text NOT NULL,
    synced_at text NOT NULL,
    row_count bigint NOT NULL
);
