-- 0019 (PostgreSQL): each ledger gets a random, permanent id that its audit signatures name (policy/audit.py, "Ledger").
--
-- Two ledgers may share one key file; a record or head signed before this migration names no ledger, so one
-- copied from another ledger signed with the same key verified here. From now on every record and head names
-- ledger_identity.id. unnamed_through is the last position a record signed before this migration may hold: the
-- records the ledger holds now, chained or still waiting for the sequencer (they are chained next, in order).
-- One row (one = 1). audit_heads.ledger is the ledger a head was signed for (NULL: signed before this migration).
-- The SQLite file differs only in the random source (gen_random_uuid: 122 random bits, PostgreSQL 13 on).
CREATE TABLE ledger_identity (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id TEXT NOT NULL,
    unnamed_through BIGINT NOT NULL
);

INSERT INTO ledger_identity (one, id, unnamed_through)
SELECT 1, replace(CAST(gen_random_uuid() AS TEXT), '-', ''), COALESCE(MAX(seq), 0) + COUNT(*) - COUNT(seq) FROM audit_log;

ALTER TABLE audit_heads ADD COLUMN ledger TEXT
