"""The audit write path on PostgreSQL: a shared head row (before 0008) against signed, unchained records.

    python -m bench.audit_bench [--writers N] [--seconds S] [--rounds R] [--postgres-url URL] [--json]

Each transaction appends the three records of a gated transfer (`requested`, `approved`,
`executed`) and nothing else, from `--writers` threads with their own connections, for
`--seconds` per design, in alternating rounds (so load from other processes hits both alike):

- **head row** (the design before migration 0008, reproduced here as the baseline): advance
  the one `audit_head` row (locked until commit), chain the records onto it, sign the head,
  update the head's hash;
- **sequencer** (today's): sign each record, insert it unchained; a background `Sequencer`
  (as every server runs one) chains and signs heads meanwhile, on the same database.

Reported: transactions/s per design, their ratio, how many records were still unchained when
the last (sequencer) round's writers stopped (whether the sequencer keeps up), and the
per-record signing cost. Everything written is chained and verified at the end of the run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from bench.ledger_bench import postgres_schema
from bench.servers import audit_key
from mcp_server.audit import reader as audit_log
from mcp_server.audit.keys import load_keyring
from mcp_server.audit.sequencer import Background, Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.storage.database import Database
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import format_timestamp
from policy.audit import GENESIS, HeadSigner, Keyring, chain_hash
from policy.canonical import canonical_json
from policy.store import AuditEntry

LEDGER = "0" * 32
"""The ledger id the signing cost is measured with: every record names one (its length is what costs)."""

_OLD_TABLES = (
    "CREATE TABLE old_audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    f"INSERT INTO old_audit_head VALUES (1, 0, '{GENESIS}')",
    "CREATE TABLE old_audit_log (seq BIGINT PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL,"
    " principal TEXT NOT NULL, tool TEXT NOT NULL, arguments_json TEXT NOT NULL, policy_version TEXT NOT NULL,"
    " matched_rules_json TEXT NOT NULL, reason TEXT NOT NULL, approval_ref TEXT, question_sha256 TEXT, note TEXT,"
    " result_json TEXT, amount_minor BIGINT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, key_id TEXT,"
    " signature TEXT)",
)


@functools.cache
def _old_statements(prefix: str) -> tuple[Statement, Statement, Statement]:
    """The head-row design's statements, on `{prefix}audit_head` and `{prefix}audit_log`."""
    return (
        Statement(f"UPDATE {prefix}audit_head SET seq = seq + :n WHERE id = 1 RETURNING seq, hash"),
        Statement(f"UPDATE {prefix}audit_head SET hash = :h WHERE id = 1"),
        Statement(
            f"INSERT INTO {prefix}audit_log (seq, at, event, principal, tool, arguments_json, policy_version, "
            "matched_rules_json, reason, approval_ref, question_sha256, note, result_json, amount_minor, prev_hash, "
            "hash, key_id, signature) VALUES (:seq, :at, :event, :principal, :tool, :arguments_json, :policy_version, "
            ":matched_rules_json, :reason, :approval_ref, :question_sha256, :note, :result_json, :amount_minor, "
            ":prev_hash, :hash, :key_id, :signature)"
        ),
    )


def gated_call(n: int) -> list[AuditEntry]:
    """The three records of one approved transfer (moving no money here: no ledger transaction to name)."""
    base = AuditEntry(
        at=time.time(), event="requested", principal=f"bench-{n % 7}", tool="transfer_funds",
        arguments={"from_account": "ACC-001", "to_account": "ACC-002", "amount": "0.01"}, policy_version="v1",
        matched_rules=("ask",), reason="needs approval", approval_ref=f"APR-{n}",
    )  # fmt: skip
    return [base, replace(base, event="approved", note="ok"), replace(base, event="executed", result={"ok": n})]


def append_with_head_row(
    conn: Connection, signer: HeadSigner, entries: Sequence[AuditEntry], prefix: str = "old_"
) -> None:
    """The append every writer ran before 0008: the head row stays locked until this transaction commits.
    (`prefix=""` writes the tables of a ledger not yet migrated to 0008.)"""
    advance, set_hash, insert = _old_statements(prefix)
    row = advance.one(conn, {"n": len(entries)})
    assert row is not None
    last, prev = int(row[0]), str(row[1])
    for seq, entry in enumerate(entries, start=last - len(entries) + 1):
        record: dict[str, Any] = {
            "seq": seq, "at": format_timestamp(datetime.fromtimestamp(entry.at, UTC)), "event": entry.event,
            "principal": entry.principal, "tool": entry.tool, "arguments_json": canonical_json(entry.arguments),
            "policy_version": entry.policy_version, "matched_rules_json": canonical_json(list(entry.matched_rules)),
            "reason": entry.reason, "approval_ref": entry.approval_ref, "question_sha256": None, "note": entry.note,
            "result_json": canonical_json(entry.result) if entry.result else None, "amount_minor": entry.amount_minor,
            "prev_hash": prev, "key_id": None, "signature": None,
        }  # fmt: skip
        record["hash"] = prev = chain_hash(record["prev_hash"], {**record, "rid": None})
        if seq == last:
            head = signer.sign_head(seq, prev, record["at"], None)  # the old design's heads named no ledger
            record["key_id"], record["signature"] = head.key_id, head.signature
        insert.run(conn, record)
    set_hash.run(conn, {"h": prev})


@dataclass
class Figure:
    design: str
    writers: int
    transactions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.transactions / self.seconds


def drive(url: str, writers: int, seconds: float, work: Callable[[Connection, int], None]) -> tuple[int, float]:
    """`writers` threads, each with its own pool, running `work` in write transactions for `seconds`."""
    databases = [Database.open(url, pool_size=1) for _ in range(writers)]
    counts = [0] * writers
    start = threading.Barrier(writers + 1)
    deadline: list[float] = []

    def writer(index: int) -> None:
        start.wait()
        while time.monotonic() < deadline[0]:
            databases[index].run(lambda conn: work(conn, index * 1_000_000 + counts[index]))
            counts[index] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline.append(began + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    for database in databases:
        database.close()
    return sum(counts), elapsed


def signing_cost(signer: HeadSigner, count: int = 2000) -> tuple[float, float]:
    """(µs to sign one record, µs to verify one) with Ed25519."""
    record = {"rid": "r", "event": "executed", "amount_minor": 1, "key_id": signer.key_id}
    began = time.perf_counter()
    for _ in range(count):
        record["signature"] = signer.sign_record(record, LEDGER)
    signed = time.perf_counter()
    keys = Keyring([signer.public_key])
    for _ in range(count):
        keys.verify_record(record, LEDGER)
    return (signed - began) / count * 1e6, (time.perf_counter() - signed) / count * 1e6


def run(url: str, writers: int, seconds: float, rounds: int, workdir: Path) -> dict[str, Any]:
    """Both designs on `url`, the records signed and verified with the key in `workdir` (never the operator's)."""
    db = Database.open(url)

    def create_old_tables(conn: Connection) -> None:
        for statement in _OLD_TABLES:
            conn.exec_driver_sql(statement)

    db.run(create_old_tables)
    writer = AuditWriter(audit_key(workdir))
    signer = writer.signer
    background = Background(Sequencer(db, writer), interval=0.05)
    figures = {"head row": Figure("head row", writers, 0, 0.0), "sequencer": Figure("sequencer", writers, 0, 0.0)}

    def with_head_row(conn: Connection, n: int) -> None:
        append_with_head_row(conn, signer, gated_call(n))

    def unchained(conn: Connection, n: int) -> None:
        writer.append(conn, gated_call(n))

    designs = {"head row": with_head_row, "sequencer": unchained}
    count_unchained = "SELECT COUNT(*) FROM audit_log WHERE seq IS NULL"
    with background.running():
        for _ in range(rounds):
            for name, work in designs.items():
                done, elapsed = drive(url, writers, seconds, work)
                figures[name].transactions += done
                figures[name].seconds += elapsed
        behind = int(db.read(lambda conn: conn.exec_driver_sql(count_unchained).scalar_one()))
    verified = audit_log.verify(db, load_keyring(writer.key_path), sequencer=background.sequencer)
    sign_us, verify_us = signing_cost(signer)
    db.close()
    old, new = figures["head row"], figures["sequencer"]
    return {
        "writers": writers,
        "figures": [asdict(f) | {"per_second": round(f.per_second, 1)} for f in (old, new)],
        "ratio": round(new.per_second / old.per_second, 2),
        "unchained_when_writers_stopped": behind,
        "records_chained": verified.records,
        "pending_after": verified.pending,
        "findings": [str(f) for f in verified.findings],
        "sign_us": round(sign_us, 1),
        "verify_us": round(verify_us, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="per design and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres-url", default=os.environ.get("BANKGATE_TEST_POSTGRES_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.postgres_url:
        parser.error("needs PostgreSQL: --postgres-url URL or BANKGATE_TEST_POSTGRES_URL")
    with postgres_schema(args.postgres_url) as url, tempfile.TemporaryDirectory(prefix="bankgate-audit-bench-") as work:
        result = run(url, args.writers, args.seconds, args.rounds, Path(work))
    if args.json:
        print(json.dumps(result))
        return
    print(f"audit_bench: {args.writers} writers on PostgreSQL, 3 records per transaction")
    print(f"{'design':<12} {'transactions':>12} {'tx/s':>9}")
    for figure in result["figures"]:
        print(f"{figure['design']:<12} {figure['transactions']:>12} {figure['per_second']:>9}")
    print(f"sequencer / head row: {result['ratio']}")
    print(f"Ed25519 per record: sign {result['sign_us']} µs, verify {result['verify_us']} µs")
    first = f": {result['findings'][0]}" if result["findings"] else ""
    chained, pending = result["records_chained"], result["pending_after"]
    print(f"when the writers stopped, {result['unchained_when_writers_stopped']} records were not chained yet")
    print(f"afterwards: {chained} records chained, {pending} pending, {len(result['findings'])} findings{first}")


if __name__ == "__main__":
    main()
