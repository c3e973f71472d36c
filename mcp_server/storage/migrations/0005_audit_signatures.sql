-- 0005: the last audit record of every writing transaction carries an Ed25519 signature of the
-- chain head it leaves (seq, hash, at, key_id), made with a key kept outside the database.
-- key_id names the signing key, so records signed before a key rotation still verify.
ALTER TABLE audit_log ADD COLUMN key_id TEXT;
ALTER TABLE audit_log ADD COLUMN signature TEXT
