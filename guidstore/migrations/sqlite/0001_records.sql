-- Records live in a rowid table: new rows append to its last page, and the expiry index, ordered
-- by (expire, rowid), appends too, so a create dirties one random page (in the GUID index) rather
-- than two (a table keyed by GUID, and an expiry index ordered by (expire, GUID)).
CREATE TABLE records (
    id       INTEGER PRIMARY KEY,
    guid     TEXT NOT NULL UNIQUE,
    expire   INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    version  INTEGER NOT NULL
);
CREATE INDEX records_by_expire ON records (expire);
