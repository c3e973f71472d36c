-- 0008: records are written unchained and signed one by one; a sequencer chains them later.
--
-- Writers no longer share a row: each inserts its records with seq, prev_hash and hash NULL and
-- its own Ed25519 signature over rid and content (key_id, signature). The sequencer, alone under
-- its own lock, gives committed records their positions and hashes in batches and signs the head
-- each batch leaves into audit_heads (one row per batch, as a transparency log's signed tree heads).
--
-- Existing records keep their positions and hashes; they get rid 'legacy-<seq>' (a legacy record
-- hashes without its rid) and no record signature. The head signatures the old writer put on the
-- last record of each transaction become rows of audit_heads (same signed message), so the
-- chained history verifies as before. audit_head, the row every writer locked, goes.
CREATE TABLE audit_heads (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);

INSERT INTO audit_heads (seq, hash, at, key_id, signature)
SELECT seq, hash, at, key_id, signature FROM audit_log WHERE signature IS NOT NULL AND key_id IS NOT NULL;

CREATE TABLE audit_records (
    rid TEXT PRIMARY KEY,
    seq BIGINT UNIQUE,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    principal TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_json TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    matched_rules_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    approval_ref TEXT,
    question_sha256 TEXT,
    note TEXT,
    result_json TEXT,
    amount_minor BIGINT NOT NULL,
    prev_hash TEXT,
    hash TEXT,
    key_id TEXT,
    signature TEXT
);

INSERT INTO audit_records (rid, seq, at, event, principal, tool, arguments_json, policy_version, matched_rules_json,
    reason, approval_ref, question_sha256, note, result_json, amount_minor, prev_hash, hash, key_id, signature)
SELECT 'legacy-' || seq, seq, at, event, principal, tool, arguments_json, policy_version, matched_rules_json,
    reason, approval_ref, question_sha256, note, result_json, amount_minor, prev_hash, hash, NULL, NULL
FROM audit_log;

DROP TABLE audit_log;

ALTER TABLE audit_records RENAME TO audit_log;

CREATE INDEX audit_by_principal ON audit_log (principal, at);

-- What the sequencer reads each batch: only the records still waiting for a position.
CREATE INDEX audit_unchained ON audit_log (rid) WHERE seq IS NULL;

DROP TABLE audit_head
