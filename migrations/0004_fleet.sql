-- Issue 17: the worker (host and pid) of each run, and the scheduled slots claimed by
-- daemons sharing this store, so each slot runs once (src/state/sqlite.rs, `claim_slot`).
-- (0002 and 0003 belong to the reconcile marker and the audit trail / stored plans.)
ALTER TABLE runs ADD COLUMN worker TEXT;
CREATE TABLE slots (
    connector  TEXT NOT NULL,
    slot_at    TEXT NOT NULL,
    worker     TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    done_at    TEXT,
    PRIMARY KEY (connector, slot_at)
) WITHOUT ROWID;
CREATE INDEX slots_open_by_worker ON slots (worker) WHERE done_at IS NULL;
