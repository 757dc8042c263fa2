-- Issue 30: fencing. Each lease carries a token that increases on every take-over (from
-- lease_tokens, one row); a run's writes check that the connector's lease still carries its
-- token, and each run records the token it held (runs.fence).
ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN fence INTEGER;
CREATE TABLE lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);
INSERT INTO lease_tokens (id, last) VALUES (1, 0);
