-- 0002: the policy layer's approvals and its hash-chained audit log.

-- One row per question put to a human. pending_binding equals binding while the approval
-- is pending and is NULL once settled, so each exact call has at most one open question;
-- state_digest names the protocol round that settled it, so a replayed round is recognised.
CREATE TABLE approvals (
    ref TEXT PRIMARY KEY,
    binding TEXT NOT NULL,
    pending_binding TEXT UNIQUE,
    tool TEXT NOT NULL,
    arguments_json TEXT NOT NULL,
    principal TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    question TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'executed', 'rejected', 'cancelled', 'expired', 'denied', 'failed')),
    decided_at DOUBLE PRECISION,
    state_digest TEXT UNIQUE,
    note TEXT,
    outcome_json TEXT,
    CHECK ((status = 'pending') = (pending_binding IS NOT NULL))
);

-- Append-only decisions and outcomes; hash = sha256(prev_hash, the record's columns).
CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
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
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_by_principal ON audit_log (principal, at);

-- The chain's head: appends lock this row, so records are chained one at a time, and a
-- deleted tail shows as a head that points past the last record.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
