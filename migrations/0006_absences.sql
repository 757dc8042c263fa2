-- Issue 27: since when each person has been absent from the file, for `[sync]
-- deactivate_after` (a person keeps their account until absent that long). A table of its
-- own beside the snapshot: only people absent now have a row, the snapshot's rows and its
-- load are unchanged, and a store without it (older) simply has nobody in grace.
CREATE TABLE absences (
    connector   TEXT NOT NULL,
    external_id TEXT NOT NULL,
    since       TEXT NOT NULL,
    PRIMARY KEY (connector, external_id)
) WITHOUT ROWID;
