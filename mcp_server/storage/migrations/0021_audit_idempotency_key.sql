-- 0021: a record states the idempotency key its call ran under (the key as the gate scopes it to its caller).
--
-- A retried key moves money once because the key's stored outcome (idempotency_keys) and the UNIQUE on
-- transactions.idempotency_key both hold. Someone who can write the database can delete the one and clear
-- the other, and the retry then runs again: nothing left in the database ties it to the first run. The
-- record of each run now says its key, signed and chained with the rest of the record when set (the
-- records from before it, key NULL, verify as they were signed), so `audit verify` names a key run twice
-- and a transaction whose key no longer is its record's.
ALTER TABLE audit_log ADD COLUMN idempotency_key TEXT
