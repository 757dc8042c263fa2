-- The fleet (issue 17): which worker ran each run, and the scheduled slots the workers
-- claim so each slot of a connector runs once across the fleet. A claim lapses at
-- expires_at unless its worker renews it (every third of the lease TTL); an unfinished,
-- lapsed claim is taken over by another worker. Same shape as SQLite's 0004.
ALTER TABLE runs ADD COLUMN worker text;
CREATE TABLE slots (
    connector  text COLLATE "C" NOT NULL,
    slot_at    timestamptz NOT NULL,
    worker     text NOT NULL,
    claimed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    done_at    timestamptz,
    PRIMARY KEY (connector, slot_at)
);
CREATE INDEX slots_open_by_worker ON slots (worker) WHERE done_at IS NULL;
