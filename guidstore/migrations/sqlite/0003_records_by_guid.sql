-- Schema 3: records keyed by the GUID's 16 bytes (hex text decoded, so the key order is the GUIDs'
-- text order) in a WITHOUT ROWID table. A read by GUID is one B-tree descent (the table itself),
-- not two (the GUID index, then the rowid table), and the key is half the size: at 10 million
-- records the table's inner pages stay in the page cache. A create writes the table's leaf and an
-- entry of the expiry index, ordered by (expire, GUID), which appends while expiries grow.
CREATE TABLE records_by_guid (
    guid     BLOB NOT NULL PRIMARY KEY,
    expire   INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    version  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO records_by_guid (guid, expire, metadata, version)
    SELECT unhex(guid), expire, metadata, version FROM records ORDER BY guid;
DROP TABLE records;
ALTER TABLE records_by_guid RENAME TO records;
CREATE INDEX records_by_expire ON records (expire);
