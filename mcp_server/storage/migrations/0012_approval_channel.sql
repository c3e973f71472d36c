-- 0012: each approval records where the policy allows it to be given (policy.channel.Channel).
--
-- The desk lists and decides only approvals it may settle: 'form' ones (the requester's own
-- form and nothing else) are neither shown nor signable there. NULL (asked before this
-- migration) is treated as 'any', as every approval was then.
ALTER TABLE approvals ADD COLUMN channel TEXT
