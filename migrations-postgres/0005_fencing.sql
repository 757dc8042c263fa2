-- Issue 30: fencing. Each lease carries a token that increases on every take-over (from the
-- lease_tokens sequence); a run's writes check, in their own transaction and holding the
-- lease row (FOR SHARE, so a take-over waits for them), that the connector's lease still
-- carries its token; each run records the token it held (runs.fence). Same as SQLite's 0005.
ALTER TABLE leases ADD COLUMN token bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN fence bigint;
CREATE SEQUENCE lease_tokens;
