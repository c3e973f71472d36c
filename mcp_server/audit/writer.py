"""Appending to the audit chain inside the caller's transaction, signing the head it leaves.

Both the gate (through `SqlGateTx`) and ledger administration outside the gate (deposits, the
demo seed) append here, so every ledger transaction has a record naming it.
"""

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from mcp_server.audit.keys import key_file, load_signer
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import format_timestamp
from policy.audit import HeadSigner, chain_hash
from policy.canonical import canonical_json
from policy.store import AuditEntry

_ADVANCE_HEAD = Statement("UPDATE audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash")
_SET_HEAD_HASH = Statement("UPDATE audit_head SET hash = :h WHERE id = 1")
_INSERT_AUDIT = Statement(
    "INSERT INTO audit_log (seq, at, event, principal, tool, arguments_json, policy_version, matched_rules_json, "
    "reason, approval_ref, question_sha256, note, result_json, amount_minor, prev_hash, hash, key_id, signature) "
    "VALUES (:seq, :at, :event, :principal, :tool, :arguments_json, :policy_version, :matched_rules_json, :reason, "
    ":approval_ref, :question_sha256, :note, :result_json, :amount_minor, :prev_hash, :hash, :key_id, :signature)"
)


class AuditWriter:
    """Chains records onto the head and signs the last one with the key from `key_file`."""

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

    def append(self, conn: Connection, entries: Sequence[AuditEntry]) -> None:
        """Chain `entries` onto the head, whose row stays locked until commit; sign the new head."""
        if not entries:
            return
        signer = self.signer
        head = _ADVANCE_HEAD.one(conn, {"n": len(entries)})
        assert head is not None, "migration 0002 creates the audit head"
        last_seq, prev_hash = int(head[0]), head[1]
        for seq, entry in enumerate(entries, start=last_seq - len(entries) + 1):
            record = _audit_record(seq, entry)
            record["prev_hash"], record["hash"] = prev_hash, chain_hash(prev_hash, record)
            record["key_id"] = record["signature"] = None
            if seq == last_seq:
                signed = signer.sign_head(seq, record["hash"], record["at"])
                record["key_id"], record["signature"] = signed.key_id, signed.signature
            prev_hash = record["hash"]
            _INSERT_AUDIT.run(conn, record)
        _SET_HEAD_HASH.run(conn, {"h": prev_hash})


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
