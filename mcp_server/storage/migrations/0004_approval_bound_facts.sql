-- 0004: the facts an approval is bound to beyond its arguments (e.g. the balance a close
-- sweeps), as shown in its question; compared again under lock when the answer settles it.
-- NULL (approvals asked before this migration) binds no facts: an action that now declares
-- some finds them changed, so such an approval runs nothing.
ALTER TABLE approvals ADD COLUMN bound_json TEXT
