-- 0014: a principal's approvals still waiting for an answer, counted on every new question.
--
-- The gate refuses a question past `max_pending_approvals` open for its principal; the count reads
-- only pending rows, so the index holds those alone (settled approvals, the table's bulk, stay out).
CREATE INDEX approvals_waiting_by_principal ON approvals (principal, expires_at) WHERE status = 'pending'
