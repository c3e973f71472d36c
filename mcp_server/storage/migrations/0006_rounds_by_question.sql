-- 0006: a 2026-07-28 round finds its own approval by the question it answers.
--
-- asked_digest is the SDK's digest of the exact question put to the client (it carries the
-- approval's unique reference), which the client's sealed request state names in every
-- answering round. It is set when the approval is created, so every settlement of the
-- approval, whatever ended it, is what a replayed round finds. Approvals created before
-- this migration have none: a round answering one is asked again.
ALTER TABLE approvals ADD COLUMN asked_digest TEXT;

CREATE UNIQUE INDEX approvals_by_asked_digest ON approvals (asked_digest);
