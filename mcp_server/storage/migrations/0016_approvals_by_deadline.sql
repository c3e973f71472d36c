-- 0016: what the server needs to end the questions nobody came back for (mcp_server.expiry).
--
-- Each approval keeps the idempotency key of the call that asked it (NULL: asked without one, or before this
-- migration), so the outcome the server settles it with is stored under that key, as the gate would store it
-- for the caller retrying it. The pending approvals are indexed by deadline: the sweep reads the overdue ones
-- oldest first, and the index holds only pending rows (settled approvals, the table's bulk, stay out).
ALTER TABLE approvals ADD COLUMN idempotency_key TEXT;
CREATE INDEX approvals_pending_by_deadline ON approvals (expires_at) WHERE status = 'pending'
