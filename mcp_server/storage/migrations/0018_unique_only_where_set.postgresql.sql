-- 0018 (PostgreSQL): a unique column indexes only the rows that set it (each index entry a call writes is a
-- page). See the SQLite file of this migration for why; PostgreSQL changes the constraints in place.
ALTER TABLE approvals DROP COLUMN state_digest;
ALTER TABLE approvals DROP CONSTRAINT approvals_pending_binding_key;
CREATE UNIQUE INDEX approvals_one_pending ON approvals (pending_binding) WHERE pending_binding IS NOT NULL;
ALTER TABLE transactions DROP CONSTRAINT transactions_idempotency_key_key;
CREATE UNIQUE INDEX transactions_by_idempotency_key ON transactions (idempotency_key) WHERE idempotency_key IS NOT NULL;
DROP INDEX transactions_by_approval;
CREATE UNIQUE INDEX transactions_by_approval ON transactions (approval_ref) WHERE approval_ref IS NOT NULL
