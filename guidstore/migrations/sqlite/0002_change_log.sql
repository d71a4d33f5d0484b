-- The change log: every committed change under its revision (a rowid alias, so rows append), and
-- the one row of guidstore_meta with the newest revision and the registry's random id.
CREATE TABLE guidstore_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    revision    INTEGER NOT NULL,
    registry_id TEXT NOT NULL
);
INSERT INTO guidstore_meta (id, revision, registry_id) VALUES (1, 0, lower(hex(randomblob(16))));
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    op       TEXT NOT NULL,
    guid     TEXT NOT NULL,
    at       INTEGER NOT NULL,
    expire   INTEGER,
    metadata TEXT,
    version  INTEGER
);
