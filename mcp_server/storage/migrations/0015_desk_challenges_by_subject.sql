-- 0015: desk challenges by whom they were issued to.
--
-- A sign-in challenge is issued to a client address, which may hold only so many open
-- (`desk.challenges.MAX_OPEN_SIGN_INS`); the count reads that address's rows alone.
CREATE INDEX desk_challenges_by_subject ON desk_challenges (subject, expires_at)
