-- 0018 (SQLite): a unique column indexes only the rows that set it (each index entry a call writes is a page).
--
-- approvals.state_digest (0002) has not been read or written since 0006 replaced it with asked_digest, yet its
-- UNIQUE index took an entry from every question: it goes, with what rows from before 0006 kept in it.
-- approvals.pending_binding's UNIQUE becomes an index of the pending rows only (a settled row, NULL there,
-- leaves it for good); transactions.idempotency_key's and approval_ref's index only the movements that have
-- one (a gated call's movement has no key unless its caller sent one; a deposit or an allowed call no
-- approval). Both still refuse a second pending question for one binding and a second movement for one key or
-- approval, as before.
--
-- SQLite drops a UNIQUE column constraint only by rebuilding the table. This runs inside the migration's
-- transaction, where foreign keys cannot be switched off: the rows are held aside, the table dropped and
-- created again under its own name with every CHECK, and the rows put back in their order (rowid kept). The
-- rows of desk_decisions and entries point at the dropped table meanwhile, so the foreign keys are checked
-- at COMMIT (defer_foreign_keys), when every one has its row again; one that has not fails the migration.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE approvals_before_0018 AS
SELECT rowid AS row_id, ref, binding, pending_binding, tool, arguments_json, principal, policy_version, question,
    created_at, expires_at, status, decided_at, note, outcome_json, bound_json, asked_digest, channel, idempotency_key
FROM approvals;

DROP TABLE approvals;

CREATE TABLE approvals (
    ref TEXT PRIMARY KEY,
    binding TEXT NOT NULL,
    pending_binding TEXT,
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
    note TEXT,
    outcome_json TEXT,
    bound_json TEXT,
    asked_digest TEXT,
    channel TEXT,
    idempotency_key TEXT,
    CHECK ((status = 'pending') = (pending_binding IS NOT NULL))
);

INSERT INTO approvals (rowid, ref, binding, pending_binding, tool, arguments_json, principal, policy_version,
    question, created_at, expires_at, status, decided_at, note, outcome_json, bound_json, asked_digest, channel,
    idempotency_key)
SELECT row_id, ref, binding, pending_binding, tool, arguments_json, principal, policy_version, question,
    created_at, expires_at, status, decided_at, note, outcome_json, bound_json, asked_digest, channel, idempotency_key
FROM approvals_before_0018 ORDER BY row_id;

DROP TABLE approvals_before_0018;

CREATE UNIQUE INDEX approvals_one_pending ON approvals (pending_binding) WHERE pending_binding IS NOT NULL;
CREATE UNIQUE INDEX approvals_by_asked_digest ON approvals (asked_digest);
CREATE INDEX approvals_waiting_by_principal ON approvals (principal, expires_at) WHERE status = 'pending';

CREATE TABLE transactions_before_0018 AS
SELECT rowid AS row_id, id, kind, memo, created_at, idempotency_key, approval_ref FROM transactions;

DROP TABLE transactions;

CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('transfer', 'deposit', 'close_sweep', 'funding')),
    memo TEXT,
    created_at TEXT NOT NULL,
    idempotency_key TEXT,
    approval_ref TEXT
);

INSERT INTO transactions (rowid, id, kind, memo, created_at, idempotency_key, approval_ref)
SELECT row_id, id, kind, memo, created_at, idempotency_key, approval_ref FROM transactions_before_0018 ORDER BY row_id;

DROP TABLE transactions_before_0018;

CREATE UNIQUE INDEX transactions_by_idempotency_key ON transactions (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX transactions_by_approval ON transactions (approval_ref) WHERE approval_ref IS NOT NULL
