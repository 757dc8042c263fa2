-- Issue 27: the SCIM groups each connector created from attribute values ([groups] in a
-- mapping, src/state/groups.rs). Only groups listed here are ever changed by rostersync;
-- a group of the same name it did not create is a conflict. (Numbered after the issue, not
-- after the previous file, so that migrations written at the same time do not collide.)
CREATE TABLE created_groups (
    connector    TEXT NOT NULL,
    display_name TEXT NOT NULL,
    value        TEXT NOT NULL,
    platform_id  TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (connector, display_name)
) WITHOUT ROWID;
