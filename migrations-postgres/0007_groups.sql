-- Issue 27: the SCIM groups each connector created from attribute values (SQLite's
-- migrations/0027, same shape; src/state/groups.rs). Numbered after the issue so that
-- migrations written at the same time do not collide.
CREATE TABLE created_groups (
    connector    text COLLATE "C" NOT NULL,
    display_name text COLLATE "C" NOT NULL,
    value        text NOT NULL,
    platform_id  text NOT NULL,
    created_at   text NOT NULL,
    PRIMARY KEY (connector, display_name)
);
