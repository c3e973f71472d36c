-- 0017: fewer index pages written by each gated call (every index a transaction changes is a page it writes).
--
-- The expiry sweep reads the pending approvals through 0014's index (pending rows only, as 0016's), in that
-- index's order (each batch ends whichever are due): with nothing due it read every pending entry of 0016's
-- index anyway. 0016's index, inserted into by every question and deleted from by every settlement, goes.
--
-- A daily total (moved_today_minor) sums amount_minor, so a record that moved nothing (a question asked, a
-- refusal, a grant) adds nothing to it: the principal's index holds only records that moved money.
DROP INDEX approvals_pending_by_deadline;
DROP INDEX audit_by_principal;
CREATE INDEX audit_moved_by_principal ON audit_log (principal, at) WHERE amount_minor <> 0
