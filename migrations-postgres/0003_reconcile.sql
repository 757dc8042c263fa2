-- The reconcile marker (issue 14; SQLite's migrations/0002): set for a connector before the
-- first write of a push, cleared only once every outcome of that push is recorded. While a
-- row is here the platform may hold writes the snapshot does not, so the next run lists the
-- platform and looks up before it creates.
CREATE TABLE reconcile_marks (
    connector text COLLATE "C" PRIMARY KEY,
    run_id    text NOT NULL,
    reason    text NOT NULL,
    set_at    timestamptz NOT NULL
);
