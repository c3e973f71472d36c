"""The audit chain: each record's hash covers its content and the previous record's hash.

Editing, inserting or deleting any record breaks the chain at that point, and the stored
head (last sequence number and hash) catches a truncated tail.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policy.canonical import canonical_json

GENESIS = "0" * 64

CHAINED_FIELDS = (
    "seq",
    "at",
    "event",
    "principal",
    "tool",
    "arguments_json",
    "policy_version",
    "matched_rules_json",
    "reason",
    "approval_ref",
    "question_sha256",
    "note",
    "result_json",
    "amount_minor",
)
"""The columns a record's hash covers, as stored (JSON fields as their stored text)."""


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    body = canonical_json({name: record.get(name) for name in CHAINED_FIELDS})
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class Finding:
    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}" if self.seq is not None else self.problem


def verify_chain(records: Iterable[Mapping[str, Any]], head: tuple[int, str] | None) -> list[Finding]:
    """Findings for `records` (in sequence order, each with `seq`, `prev_hash`, `hash`); [] when intact."""
    findings: list[Finding] = []
    expected_seq, prev = 1, GENESIS
    for record in records:
        seq = int(record["seq"])
        if seq != expected_seq:
            what = "missing" if seq > expected_seq else "duplicated or out of order"
            findings.append(Finding(seq, f"sequence jumps from {expected_seq - 1} to {seq} (records {what})"))
        if record["prev_hash"] != prev:
            findings.append(Finding(seq, "does not follow the previous record (inserted, or one before it deleted)"))
        if chain_hash(record["prev_hash"], record) != record["hash"]:
            findings.append(Finding(seq, "content does not match its hash (edited)"))
        expected_seq, prev = seq + 1, record["hash"]
    last = (expected_seq - 1, prev)
    if head is not None and head != last and not (head[0] == 0 and last[0] == 0):
        findings.append(
            Finding(None, f"the chain ends at record {last[0]} but the head says {head[0]} (records deleted)")
        )
    return findings
