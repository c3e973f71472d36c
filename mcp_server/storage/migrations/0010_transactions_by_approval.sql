-- 0010: each ledger movement names the approval it settles, and an approval names at most one.
--
-- The approvals row is the first line against running an approval twice (only a pending one is
-- settled). This index is the second: an approval set back to pending behind the server's back
-- (or restored from an older copy) cannot move money again, as transactions.idempotency_key's
-- UNIQUE stops a request key's second movement. NULL (a call the policy allowed, a deposit)
-- never collides. Movements from before this migration name no approval.
ALTER TABLE transactions ADD COLUMN approval_ref TEXT;

CREATE UNIQUE INDEX transactions_by_approval ON transactions (approval_ref)
