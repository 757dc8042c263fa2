-- The per-person audit trail and the plans of stopped runs (issue 15; SQLite's
-- migrations/0003), in the same shape: times as RFC 3339 text (UTC, milliseconds, so they
-- sort), lists and records as JSON text.
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    connector   text COLLATE "C" NOT NULL,
    external_id text COLLATE "C" NOT NULL,
    run_id      text NOT NULL,
    at          text NOT NULL,
    kind        text NOT NULL,
    fields      text NOT NULL,
    status      text NOT NULL,
    http_status integer,
    approval    text
);
CREATE INDEX audit_by_person ON audit (connector, external_id, at);
CREATE INDEX audit_by_time ON audit (at);
CREATE TABLE plans (
    run_id              text PRIMARY KEY,
    connector           text COLLATE "C" NOT NULL,
    created_at          text NOT NULL,
    file                text NOT NULL,
    state_fingerprint   text NOT NULL,
    digest              text NOT NULL,
    rule                text NOT NULL,
    message             text NOT NULL,
    dry_run             boolean NOT NULL,
    operations          text NOT NULL,
    operations_left_out bigint NOT NULL,
    approval            text,
    applied_by          text
);
CREATE INDEX plans_by_connector ON plans (connector, created_at);
