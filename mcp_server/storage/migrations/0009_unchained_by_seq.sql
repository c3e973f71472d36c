-- 0009: the sequencer finds the records waiting for a position through the seq index, whose NULL
-- entries are exactly those records (SQLite and PostgreSQL index NULLs), so the partial index on the
-- same rows goes: each transaction that writes audit records wrote a page of it, and each batch one more.
DROP INDEX audit_unchained
