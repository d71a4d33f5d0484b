-- guidstore on MariaDB/MySQL (InnoDB), schema version 1.
-- guidstore_meta's one row holds the schema version, the newest revision (write transactions lock
-- this row first, so they commit one at a time and revision order is commit order) and the
-- registry's random id.
CREATE TABLE guidstore_meta (
    id             INT PRIMARY KEY,
    schema_version INT NOT NULL,
    revision       BIGINT NOT NULL,
    registry_id    CHAR(32) NOT NULL
) ENGINE = InnoDB;
INSERT INTO guidstore_meta (id, schema_version, revision, registry_id)
    VALUES (1, 1, 0, MD5(CONCAT(RAND(), NOW(6), CONNECTION_ID())));
CREATE TABLE guidstore_records (
    guid     CHAR(32) CHARACTER SET ascii COLLATE ascii_bin PRIMARY KEY,
    expire   BIGINT NOT NULL,
    metadata LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    version  BIGINT NOT NULL,
    KEY guidstore_records_by_expire (expire)
) ENGINE = InnoDB;
CREATE TABLE guidstore_changes (
    revision BIGINT PRIMARY KEY,
    op       VARCHAR(8) CHARACTER SET ascii NOT NULL,
    guid     CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    at       BIGINT NOT NULL,
    expire   BIGINT NULL,
    metadata LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    version  BIGINT NULL
) ENGINE = InnoDB;
