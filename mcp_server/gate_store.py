"""The policy layer's storage (approvals, audit chain, idempotency) on the ledger database.

One `SqlGateTx` wraps one ledger transaction, so the gate settles an approval, moves the
money and appends the audit records atomically.
"""

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, text

from mcp_server import idempotency
from mcp_server.database import Database
from mcp_server.timestamps import format_timestamp
from policy.audit import chain_hash
from policy.canonical import canonical_json
from policy.store import Approval, AuditEntry

T = TypeVar("T")

_APPROVAL_COLUMNS = (
    "ref, binding, tool, arguments_json, principal, policy_version, question, created_at, expires_at, "
    "status, state_digest, note, outcome_json"
)


_ADVANCE_HEAD = text("UPDATE audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash")
_SET_HEAD_HASH = text("UPDATE audit_head SET hash = :h WHERE id = 1")
_INSERT_AUDIT = text(
    "INSERT INTO audit_log (seq, at, event, principal, tool, arguments_json, policy_version, matched_rules_json, "
    "reason, approval_ref, question_sha256, note, result_json, amount_minor, prev_hash, hash) VALUES (:seq, :at, "
    ":event, :principal, :tool, :arguments_json, :policy_version, :matched_rules_json, :reason, :approval_ref, "
    ":question_sha256, :note, :result_json, :amount_minor, :prev_hash, :hash)"
)


def _audit_record(seq: int, entry: AuditEntry) -> dict[str, Any]:
    """The stored columns of one audit entry (before chaining)."""
    return {
        "seq": seq,
        "at": format_timestamp(datetime.fromtimestamp(entry.at, UTC)),
        "event": entry.event,
        "principal": entry.principal,
        "tool": entry.tool,
        "arguments_json": canonical_json(entry.arguments),
        "policy_version": entry.policy_version,
        "matched_rules_json": canonical_json(list(entry.matched_rules)),
        "reason": entry.reason,
        "approval_ref": entry.approval_ref,
        "question_sha256": entry.question_sha256,
        "note": entry.note,
        "result_json": canonical_json(entry.result) if entry.result is not None else None,
        "amount_minor": entry.amount_minor,
    }


class SqlGateStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.inline_reads = db.dialect == "sqlite"

    def transaction(self, work: Callable[["SqlGateTx"], T], *, write: bool = True) -> T:  # type: ignore[override]
        def unit(conn: Connection) -> T:
            tx = SqlGateTx(conn, self.db)
            result = work(tx)
            tx.flush_audit()
            return result

        return self.db.run(unit) if write else self.db.read(unit)


class SqlGateTx:
    """The gate's view of one open ledger transaction; the server's actions use `conn` too."""

    def __init__(self, conn: Connection, db: Database) -> None:
        self.conn = conn
        self.db = db
        self._audit: list[AuditEntry] = []

    def recall(self, key: str, request_digest: str) -> Mapping[str, Any] | None:
        return idempotency.recall(self.conn, key, request_digest)

    def remember(self, key: str, request_digest: str, outcome: Mapping[str, Any]) -> None:
        idempotency.remember(self.conn, key, request_digest, dict(outcome))

    def approval_by_state(self, state_digest: str) -> Approval | None:
        return self._approval("state_digest = :v", state_digest)

    def pending_approval(self, binding: str) -> Approval | None:
        return self._approval("pending_binding = :v", binding)

    def create_approval(self, approval: Approval) -> Approval:
        self.conn.execute(
            text(
                "INSERT INTO approvals (ref, binding, pending_binding, tool, arguments_json, principal, "
                "policy_version, question, created_at, expires_at, status) VALUES (:ref, :binding, :binding, "
                ":tool, :arguments, :principal, :policy_version, :question, :created_at, :expires_at, 'pending') "
                "ON CONFLICT (pending_binding) DO NOTHING"
            ),
            {
                "ref": approval.ref,
                "binding": approval.binding,
                "tool": approval.tool,
                "arguments": canonical_json(approval.arguments),
                "principal": approval.principal,
                "policy_version": approval.policy_version,
                "question": approval.question,
                "created_at": approval.created_at,
                "expires_at": approval.expires_at,
            },
        )
        stored = self.pending_approval(approval.binding)
        assert stored is not None, "a pending approval exists for this binding after the insert"
        return stored

    def lock_approval(self, ref: str) -> Approval | None:
        return self._approval("ref = :v", ref, lock=True)

    def settle_approval(self, approval: Approval) -> None:
        settled = self.conn.execute(
            text(
                "UPDATE approvals SET status = :status, pending_binding = NULL, decided_at = :now, "
                "state_digest = :state_digest, note = :note, outcome_json = :outcome "
                "WHERE ref = :ref AND status = 'pending'"
            ),
            {
                "status": approval.status,
                "now": datetime.now(UTC).timestamp(),
                "state_digest": approval.state_digest,
                "note": approval.note,
                "outcome": canonical_json(approval.outcome),
                "ref": approval.ref,
            },
        )
        if settled.rowcount != 1:
            raise RuntimeError(f"approval {approval.ref} was already settled")

    def moved_today_minor(self, principal: str, since: float) -> int:
        total = self.conn.execute(
            text("SELECT COALESCE(SUM(amount_minor), 0) FROM audit_log WHERE principal = :p AND at >= :since"),
            {"p": principal, "since": format_timestamp(datetime.fromtimestamp(since, UTC))},
        ).scalar_one()
        return int(total)

    def append_audit(self, entry: AuditEntry) -> None:
        """Queue `entry`; the transaction's entries are chained and written together at its end."""
        self._audit.append(entry)

    def flush_audit(self) -> None:
        """Chain the queued entries onto the head (locking it until commit) in three statements."""
        if not self._audit:
            return
        last_seq, prev_hash = self.conn.execute(_ADVANCE_HEAD, {"n": len(self._audit)}).one()
        records = []
        for seq, entry in enumerate(self._audit, start=int(last_seq) - len(self._audit) + 1):
            record = _audit_record(seq, entry)
            record["prev_hash"], record["hash"] = prev_hash, chain_hash(prev_hash, record)
            prev_hash = record["hash"]
            records.append(record)
        self.conn.execute(_INSERT_AUDIT, records)
        self.conn.execute(_SET_HEAD_HASH, {"h": prev_hash})
        self._audit.clear()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.conn.begin_nested():
            yield

    def _approval(self, where: str, value: str, *, lock: bool = False) -> Approval | None:
        row = self.conn.execute(
            text(f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE {where}{self.db.for_update if lock else ''}"),
            {"v": value},
        ).one_or_none()
        if row is None:
            return None
        return Approval(
            ref=row.ref,
            binding=row.binding,
            tool=row.tool,
            arguments=json.loads(row.arguments_json),
            principal=row.principal,
            policy_version=row.policy_version,
            question=row.question,
            created_at=float(row.created_at),
            expires_at=float(row.expires_at),
            status=row.status,
            state_digest=row.state_digest,
            note=row.note,
            outcome=json.loads(row.outcome_json) if row.outcome_json else None,
        )
