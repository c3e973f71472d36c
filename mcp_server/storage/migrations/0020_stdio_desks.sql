-- 0020: the loopback ports on which desks beside stdio serve this ledger now (mcp_server/desk/presence.py).
--
-- A desk beside stdio takes another free port when its own is taken (by a second client's server, or by
-- anything else), so `approvers add`, run in its own process, cannot know from the settings where the desk
-- is: it linked to the configured port, and an enrollment token sent there reached whatever held it, which
-- could register its own passkey as the approver. Each such desk records its port here and renews it
-- every 15 s; the command links to a port renewed within the last minute. One row per port.
CREATE TABLE stdio_desks (
    port INTEGER PRIMARY KEY CHECK (port BETWEEN 1 AND 65535),
    seen_at DOUBLE PRECISION NOT NULL
)
