"""Writing audit records inside the caller's transaction: signed, unchained, with no shared row.

Both the gate (through `SqlGateTx`) and ledger administration outside the gate (deposits, the
demo seed) append here, so every ledger transaction has a record naming it, committed with it.
A record is acknowledged when that transaction commits; the sequencer (`audit.sequencer`)
gives it its chain position later, and a crash in between loses nothing (it is chained by the
next batch, on restart at the latest).

Each record is signed on its own (`HeadSigner.sign_record`, no lock, ~25 µs), so the
sequencer chains only what a holder of the key wrote. Its `rid` (the writer's clock, random
bits, its place in the transaction) orders unchained records for the sequencer and makes two
equal decisions two records.
"""

import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from mcp_server.audit.keys import key_file, load_signer
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import format_timestamp
from policy.audit import HeadSigner
from policy.canonical import canonical_json
from policy.store import AuditEntry

_INSERT_AUDIT = Statement(
    "INSERT INTO audit_log (rid, at, event, principal, tool, arguments_json, policy_version, matched_rules_json, "
    "reason, approval_ref, question_sha256, note, result_json, amount_minor, key_id, signature) "
    "VALUES (:rid, :at, :event, :principal, :tool, :arguments_json, :policy_version, :matched_rules_json, :reason, "
    ":approval_ref, :question_sha256, :note, :result_json, :amount_minor, :key_id, :signature)"
)


class AuditWriter:
    """Signs records with the first key of `key_file` and inserts them unchained."""

    def __init__(self, key_path: Path | None = None) -> None:
        self.key_path = key_file(key_path)
        self._signer: HeadSigner | None = None
        self._loading = threading.Lock()

    @property
    def signer(self) -> HeadSigner:
        """Loaded (or created) on first use; the server touches it at startup so a bad key file stops it there."""
        if self._signer is None:
            with self._loading:
                if self._signer is None:
                    self._signer = load_signer(self.key_path)
        return self._signer

    def append(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[str]:
        """Insert `entries`, each signed, in the caller's transaction; return their rids."""
        if not entries:
            return []
        signer = self.signer
        batch = f"{time.time_ns():016x}-{secrets.token_hex(8)}"
        rids = []
        for index, entry in enumerate(entries):
            record = _audit_record(f"{batch}-{index:04x}", entry)
            record["key_id"], record["signature"] = signer.key_id, signer.sign_record(record)
            _INSERT_AUDIT.run(conn, record)
            rids.append(record["rid"])
        return rids


def _audit_record(rid: str, entry: AuditEntry) -> dict[str, Any]:
    """The stored columns of one audit entry (before signing)."""
    return {
        "rid": rid,
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
