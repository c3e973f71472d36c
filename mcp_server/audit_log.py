"""Reading the audit chain back: verification against the keys and the ledger, checkpoints, a readable tail."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.audit_keys import key_file, load_keyring
from mcp_server.database import Database
from mcp_server.money import MINOR_UNITS, format_amount
from mcp_server.timestamps import now_text
from policy.audit import (
    CHAINED_FIELDS,
    GENESIS,
    Finding,
    HeadSigner,
    Keyring,
    SignedHead,
    check_checkpoint,
    verify_chain,
)

_COLUMNS = ", ".join((*CHAINED_FIELDS, "prev_hash", "hash", "key_id", "signature"))
_LEDGER_TRANSACTIONS = (
    "SELECT t.id, t.kind, MAX(e.amount_minor), MAX(a.currency) FROM transactions t "
    "LEFT JOIN entries e ON e.transaction_id = t.id LEFT JOIN accounts a ON a.id = e.account_id GROUP BY t.id, t.kind"
)
_MOVING_EVENTS = ("executed", "admin")
"""The records that may name a ledger transaction: the gate's executions and ledger administration."""


class CheckpointError(ValueError):
    """A checkpoint that no known key signed: nothing can be concluded from it."""


@dataclass(frozen=True)
class _Posted:
    kind: str
    amount_minor: int
    currency: str | None

    def describe(self) -> str:
        if self.currency not in MINOR_UNITS:  # no entries, or an account forged with a currency we do not know
            return f"{self.kind}, {self.amount_minor} minor units"
        return f"{self.kind}, {format_amount(self.amount_minor, self.currency)}"


def verify(
    db: Database, keys: Keyring | None = None, checkpoint: SignedHead | None = None
) -> tuple[int, list[Finding]]:
    """(records read, findings); no findings means the chain is intact, signed by `keys` (default: the
    configured key file's), holds `checkpoint`'s record, and accounts for every ledger transaction and
    every approval (each written in the same transaction as its record)."""
    records, findings = _verified(db, keys, checkpoint)
    return len(records), findings


def checkpoint(db: Database, signer: HeadSigner, keys: Keyring) -> SignedHead:
    """A signed statement of the current head, to keep outside the database. Made only of a chain
    that verifies (else ValueError), so a checkpoint never vouches for tampered records."""
    records, findings = _verified(db, keys, None)
    if findings:
        raise ValueError(f"the audit chain does not verify ({findings[0]}); run `audit verify` for every finding")
    seq, head_hash = (int(records[-1]["seq"]), str(records[-1]["hash"])) if records else (0, GENESIS)
    return signer.sign_head(seq, head_hash, now_text())


def _verified(
    db: Database, keys: Keyring | None, checkpoint: SignedHead | None
) -> tuple[list[dict[str, Any]], list[Finding]]:
    keys = keys if keys is not None else load_keyring(key_file())
    if checkpoint is not None and not keys.verify_head(checkpoint):
        raise CheckpointError(f"the checkpoint is not signed by a known audit key (its key id: {checkpoint.key_id})")

    def read(conn: Connection) -> tuple[list[dict[str, Any]], tuple[int, str], dict[str, _Posted], list[str]]:
        if conn.dialect.name == "postgresql":  # one snapshot: a transfer committing meanwhile is seen whole or not
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        records = [dict(row) for row in conn.execute(text(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")).mappings()]
        head = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).one()
        posted = {
            str(tx): _Posted(str(kind), int(amount or 0), currency)
            for tx, kind, amount, currency in conn.execute(text(_LEDGER_TRANSACTIONS))
        }
        asked = [str(ref) for (ref,) in conn.execute(text("SELECT ref FROM approvals ORDER BY created_at, ref"))]
        return records, (int(head.seq), head.hash), posted, asked

    records, head, posted, asked = db.read(read)
    findings = verify_chain(records, keys, head)
    if checkpoint is not None:
        findings += check_checkpoint(records, checkpoint)
    findings += cross_check(records, posted)
    requested = {record["approval_ref"] for record in records if record["event"] == "requested"}
    findings += [
        Finding(None, f"approval {ref} has no 'requested' record (deleted)") for ref in asked if ref not in requested
    ]
    return records, findings


def cross_check(records: Sequence[Mapping[str, Any]], posted: Mapping[str, _Posted]) -> list[Finding]:
    """Every ledger transaction is named by exactly one executed or admin record that moved the same
    amount, and every such record that moved money names a transaction the ledger holds."""
    findings: list[Finding] = []
    claimed: dict[str, int] = {}
    for record in records:
        if record["event"] not in _MOVING_EVENTS:
            continue
        seq = int(record["seq"])
        details = _details(record["result_json"])
        tx = details.get("transaction_id")
        amount = int(record["amount_minor"]) if record["event"] == "executed" else _receipt_amount(details)
        if tx is None:
            if amount:
                findings.append(
                    Finding(seq, f"{record['event']} {record['tool']} moved money but names no ledger transaction")
                )
            continue
        tx = str(tx)
        if tx in claimed:
            findings.append(Finding(seq, f"names ledger transaction {tx}, already named by record {claimed[tx]}"))
            continue
        claimed[tx] = seq
        ledger = posted.get(tx)
        if ledger is None:
            findings.append(Finding(seq, f"{record['event']} {record['tool']} names ledger transaction {tx}, "
                                    "which the ledger does not hold (deleted)"))  # fmt: skip
        elif ledger.amount_minor != amount:
            findings.append(Finding(seq, f"moved {amount} minor units but ledger transaction {tx} moves "
                                    f"{ledger.amount_minor} (edited)"))  # fmt: skip
    for tx, ledger in sorted(posted.items()):
        if tx not in claimed:
            findings.append(Finding(None, f"ledger transaction {tx} ({ledger.describe()}) has no audit record "
                                    "(posted outside the gate)"))  # fmt: skip
    return findings


def _details(result_json: str | None) -> Mapping[str, Any]:
    """The result's `details`; {} for anything else (an edited result is reported by the chain, not a crash)."""
    try:
        result = json.loads(result_json or "null")
    except ValueError:
        return {}
    details = result.get("details") if isinstance(result, dict) else None
    return details if isinstance(details, dict) else {}


def _receipt_amount(details: Mapping[str, Any]) -> int:
    amount = details.get("amount_minor") or details.get("swept_amount_minor") or 0
    return amount if isinstance(amount, int) else 0


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
