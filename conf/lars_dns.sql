-- Lars route and call-statistics schema for MySQL / MariaDB.
--
-- Same tables and columns as the original C++ Lars, so existing Lars databases and admin tools
-- keep working. lars-store runs these statements (idempotent) only in `lars init`, never when a
-- service or command opens a store. To set up a database:
--     lars init --store mysql://root@127.0.0.1:3306/lars_dns
-- or by hand:
--     mysql -u root -e 'CREATE DATABASE IF NOT EXISTS lars_dns'
--     mysql -u root lars_dns < conf/lars_dns.sql
-- Both leave the RouteVersion row id = 1 that makes it a Lars route database (lars-dns refuses
-- to serve without it).
--
-- Differences from the Lars DDL, all compatible with its data: NOT NULL everywhere, an index on
-- RouteData(modid, cmdid), ServerCallStatus.caller/succ_cnt/err_cnt UNSIGNED (IPv4 addresses
-- and counters as u32) and RouteVersion.version BIGINT UNSIGNED like RouteChange.version.
-- lars-store reads every integer as a 64-bit signed value and range-checks it, so tables created
-- by Lars with the old signedness read the same.
--
-- Kept simple for the statement splitter in store/src/schema.rs: statements end with ';', and a
-- comment is a whole line starting with '--'.

CREATE TABLE IF NOT EXISTS RouteData (
    id         INT UNSIGNED NOT NULL AUTO_INCREMENT,
    modid      INT          NOT NULL,
    cmdid      INT          NOT NULL,
    serverip   INT UNSIGNED NOT NULL,
    serverport INT UNSIGNED NOT NULL,
    PRIMARY KEY (id),
    KEY route_key (modid, cmdid)
) ENGINE = InnoDB;

-- The route version the dns service polls; one row, id = 1.
CREATE TABLE IF NOT EXISTS RouteVersion (
    id      INT UNSIGNED    NOT NULL AUTO_INCREMENT,
    version BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

INSERT IGNORE INTO RouteVersion (id, version) VALUES (1, 0);

-- One row per route edit: which key changed, at which version.
CREATE TABLE IF NOT EXISTS RouteChange (
    id      INT UNSIGNED    NOT NULL AUTO_INCREMENT,
    modid   INT             NOT NULL,
    cmdid   INT             NOT NULL,
    version BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;

-- Call statistics pushed by the agents through the reporter, latest report per key.
CREATE TABLE IF NOT EXISTS ServerCallStatus (
    modid    INT          NOT NULL,
    cmdid    INT          NOT NULL,
    ip       INT UNSIGNED NOT NULL,
    port     INT          NOT NULL,
    caller   INT UNSIGNED NOT NULL,
    succ_cnt INT UNSIGNED NOT NULL,
    err_cnt  INT UNSIGNED NOT NULL,
    ts       BIGINT       NOT NULL,
    overload CHAR(1)      NOT NULL,
    PRIMARY KEY (modid, cmdid, ip, port, caller),
    KEY mlb_index (modid, cmdid)
) ENGINE = InnoDB;

-- larsWeb's names for modules and commands, shown by `lars route list`, `lars status` and the
-- console. One row per modid (ModIDConfig) and per cmdid (CmdIDConfig, across every module, as
-- in Lars); `content` is the name. `lars route name` writes them, creating either table first
-- when a database made before it lacks it; a database without them reads as no names.
CREATE TABLE IF NOT EXISTS ModIDConfig (
    id      INT UNSIGNED NOT NULL AUTO_INCREMENT,
    modid   INT          NOT NULL,
    content VARCHAR(255) NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS CmdIDConfig (
    id      INT UNSIGNED NOT NULL AUTO_INCREMENT,
    cmdid   INT          NOT NULL,
    content VARCHAR(255) NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Not a Lars table: the operator console's audit log (who changed which route, when). lars init
-- creates it, and so does lars-console on a database that lacks it.
CREATE TABLE IF NOT EXISTS ConsoleAudit (
    id     BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    ts     BIGINT          NOT NULL,
    who    VARCHAR(64)     NOT NULL,
    peer   VARCHAR(64)     NOT NULL,
    action VARCHAR(512)    NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB;
