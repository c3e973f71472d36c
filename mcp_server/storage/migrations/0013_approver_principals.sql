-- 0013: the MCP principals each desk approver also acts as (four eyes).
--
-- `bankgate-mcp approvers link NAME PRINCIPAL` records that the person behind approver NAME may
-- also call tools as PRINCIPAL. The desk then never lets them decide an approval PRINCIPAL asked
-- for: the one who requested a movement is not the one who approves it. Links are audited.
CREATE TABLE desk_approver_principals (
    approver TEXT NOT NULL REFERENCES desk_approvers (name),
    principal TEXT NOT NULL,
    linked_by TEXT NOT NULL,
    linked_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (approver, principal)
)
