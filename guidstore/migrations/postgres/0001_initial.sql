-- guidstore on PostgreSQL, schema version 1.
-- guidstore_meta's one row holds the schema version, the newest revision (write transactions lock
-- this row first, so they commit one at a time and revision order is commit order) and the
-- registry's random id.
CREATE TABLE guidstore_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    revision       BIGINT NOT NULL,
    registry_id    TEXT NOT NULL
);
INSERT INTO guidstore_meta (id, schema_version, revision, registry_id)
    VALUES (1, 1, 0, md5(random()::text || clock_timestamp()::text));
CREATE TABLE guidstore_records (
    guid     TEXT PRIMARY KEY,
    expire   BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    version  BIGINT NOT NULL
);
CREATE INDEX guidstore_records_by_expire ON guidstore_records (expire);
CREATE TABLE guidstore_changes (
    revision BIGINT PRIMARY KEY,
    op       TEXT NOT NULL,
    guid     TEXT NOT NULL,
    at       BIGINT NOT NULL,
    expire   BIGINT,
    metadata TEXT,
    version  BIGINT
);
