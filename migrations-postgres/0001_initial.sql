-- The PostgreSQL state store (issue 17): the tables of SQLite's migrations/0001, in
-- PostgreSQL's types. Applied by sqlx's migrator under its advisory lock, so daemons of a
-- fleet starting together migrate once. Never edit a shipped file (its checksum is
-- recorded in every database): add a new one.

-- Ids compare byte-wise ("C"): the same order and equality on every server, whatever the
-- database's locale, and the cheapest comparison for a million-row primary key.
CREATE TABLE snapshot (
    connector   text COLLATE "C" NOT NULL,
    external_id text COLLATE "C" NOT NULL,
    platform_id text NOT NULL,
    hash        bytea NOT NULL,
    active      boolean NOT NULL,
    -- The user as JSON text, exactly as written (not jsonb, which would reorder it).
    content     text NOT NULL,
    PRIMARY KEY (connector, external_id)
);
CREATE TABLE last_file (
    connector text COLLATE "C" PRIMARY KEY,
    path      text NOT NULL,
    size      bigint NOT NULL,
    mtime     text,
    sha256    text NOT NULL,
    synced_at timestamptz NOT NULL
);
CREATE TABLE runs (
    run_id     text PRIMARY KEY,
    connector  text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    report     text
);
CREATE INDEX runs_by_connector ON runs (connector, started_at);
CREATE INDEX runs_by_start ON runs (started_at);
-- Times in leases are the database's clock (now()), never a worker's: the workers of a
-- fleet need not agree on the time for a lease to expire when it should.
CREATE TABLE leases (
    connector   text COLLATE "C" PRIMARY KEY,
    holder      text NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
