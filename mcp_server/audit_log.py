"""Reading the audit chain back: verification and a readable tail."""

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.database import Database
from policy.audit import CHAINED_FIELDS, Finding, verify_chain

_COLUMNS = ", ".join((*CHAINED_FIELDS, "prev_hash", "hash"))


def verify(db: Database) -> tuple[int, list[Finding]]:
    """(records read, findings); no findings means the chain is intact."""

    def read(conn: Connection) -> tuple[int, list[Finding]]:
        rows = conn.execute(text(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")).mappings()
        records = [dict(row) for row in rows]
        head = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
        return len(records), verify_chain(records, (int(head.seq), head.hash))

    return db.read(read)


@dataclass(frozen=True)
class AuditLine:
    seq: int
    at: str
    event: str
    principal: str
    tool: str
    arguments: dict[str, Any]
    approval_ref: str | None
    policy_version: str
    reason: str
    note: str | None

    def render(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.arguments.items() if v is not None)
        parts = [
            f"#{self.seq}",
            self.at[:19].replace("T", " "),
            f"{self.event:<9}",
            self.principal,
            f"{self.tool}({args})",
        ]
        if self.approval_ref:
            parts.append(self.approval_ref)
        line = "  ".join(parts)
        if self.reason:
            line += f"\n      {self.reason}"
        if self.note:
            line += f"\n      note: {self.note}"
        return line


def tail(db: Database, limit: int = 20) -> list[AuditLine]:
    query = text(
        "SELECT seq, at, event, principal, tool, arguments_json, approval_ref, policy_version, reason, note "
        "FROM audit_log ORDER BY seq DESC LIMIT :limit"
    )
    rows = db.read(lambda conn: conn.execute(query, {"limit": limit}).all())
    return [
        AuditLine(
            r.seq,
            r.at,
            r.event,
            r.principal,
            r.tool,
            json.loads(r.arguments_json),
            r.approval_ref,
            r.policy_version,
            r.reason,
            r.note,
        )
        for r in reversed(rows)
    ]
