-- Issue 24: per connector, how full each mapped column of the last file synced in full was
-- (src/state/profile.rs): the next file is compared with it before anything is planned, so
-- a column that arrives empty stops the run naming the column. `columns` is a JSON object,
-- column name → rows with a value. A store without a row (older, or before a first full
-- sync) simply has nothing to compare with.
CREATE TABLE file_profiles (
    connector TEXT PRIMARY KEY NOT NULL,
    columns   TEXT NOT NULL,
    synced_at TEXT NOT NULL,
    row_count INTEGER NOT NULL
) WITHOUT ROWID;
