-- The reconcile marker (issue 14): set for a connector before the first write of a push,
-- cleared only once every outcome of that push is recorded. While a row is here, the
-- platform may hold writes the snapshot does not (a crash, a failed or stopped push, a state
-- error mid-push), so the next run lists the platform and looks up before it creates —
-- however many failing runs come in between. Old builds do not read this table, so the
-- legacy schema_version stays at 1.
-- Never edit this file once shipped (its checksum is recorded in every DB): add a new one.

CREATE TABLE reconcile_marks (
    connector TEXT PRIMARY KEY,
    -- The run that set it, and why (for `status` and the report's note).
    run_id    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    set_at    TEXT NOT NULL
);
