-- 0020: the loopback ports on which desks beside stdio serve this ledger now (mcp_server/desk/presence.py).
--
-- A desk beside stdio takes another free port when its own is taken (by a second client's server, or by
-- anything else), so `approvers add`, run in its own process, cannot know from the settings where the desk
-- is: it linked to the configured port, and an enrollment token sent there reached whatever held it, which
-- could register its own passkey as the approver. Each such desk records its port here and renews it
-- every 15 s; the command links to a port on its own machine (`host`: a localhost link names the machine it is
-- opened on; stdio servers on several machines may share one PostgreSQL ledger) renewed within the last minute.
CREATE TABLE stdio_desks (
    host TEXT NOT NULL,
    port INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    seen_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (host, port)
)
