"""Writing audit records inside the caller's transaction: signed, unchained, with no shared row.

Both the gate (through `SqlGateTx`) and ledger administration outside the gate (deposits, the
demo seed) append here, so every ledger transaction has a record naming it, committed with it.
A record is acknowledged when that transaction commits; the sequencer (`audit.sequencer`)
gives it its chain position later, and a crash in between loses nothing (it is chained by the
next batch, on restart at the latest).

Each record is signed on its own (`HeadSigner.sign_record`, no lock, ~25 µs), for this ledger (its
id, `audit.identity`, read once: at start, by the process's `Sequencer`), so the sequencer chains
only what a holder of the key wrote for this ledger. Its `rid` (the writer's clock, random
bits, its place in the transaction) orders unchained records for the sequencer and makes two
equal decisions two records. A transaction's records go in one INSERT (one round trip).

The writer also remembers, in this process's memory only, a digest of each row exactly as it
signed and inserted it (`signed_here`): the sequencer of the same process then need not check
the signature of a row that is still byte for byte that row (its own key made the signature
over exactly that content), which is most of what chaining cost. Any other row (another
process's, or one changed in the database after its insert) is verified as before.

Every append also sets `appended`, which the process's background sequencer waits on while no
record waits, instead of polling an idle database (`audit.sequencer.Background`).
"""

import functools
import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from mcp_server.audit.identity import read_identity
from mcp_server.audit.keys import key_file, load_signer
from mcp_server.storage.statement import Statement
from mcp_server.timestamps import format_timestamp
from policy.audit import CONTENT_FIELDS, HeadSigner, LedgerIdentity
from policy.canonical import canonical_json
from policy.store import AuditEntry

RECORD_COLUMNS = ("rid", *CONTENT_FIELDS, "key_id", "signature")
"""A record's columns as written, and as the sequencer reads an unchained one back (in this order)."""
REMEMBERED = 100_000
"""Rows `signed_here` remembers at most (~150 bytes each); past that the oldest are checked by signature.
Rows of transactions that rolled back are never chained, so they leave only this way."""


@functools.cache
def _insert(count: int) -> Statement:
    """One INSERT of `count` records (parameters suffixed `_0`, `_1`, …)."""
    rows = ", ".join("(" + ", ".join(f":{name}_{n}" for name in RECORD_COLUMNS) + ")" for n in range(count))
    return Statement(f"INSERT INTO audit_log ({', '.join(RECORD_COLUMNS)}) VALUES {rows}")


def row_digest(row: Sequence[Any]) -> bytes:
    """A digest of a record's columns (`RECORD_COLUMNS` order; str, int or None each: `repr` is unambiguous)."""
    return hashlib.sha256(repr(tuple(row)).encode()).digest()


class AuditWriter:
    """Signs records with the first key of `key_file` for one ledger and inserts them unchained."""

    def __init__(self, key_path: Path | None = None) -> None:
        self.key_path = key_file(key_path)
        self._signer: HeadSigner | None = None
        self._ledger: LedgerIdentity | None = None
        self._loading = threading.Lock()
        self._signed: OrderedDict[str, bytes] = OrderedDict()
        self._remembering = threading.Lock()
        self.appended = threading.Event()
        """Set after each append (before its transaction commits): wakes this process's idle sequencer. An
        append that finds it set leaves it so (setting it again costs a condition's notify): the sequencer has
        not yet taken the signal, so it takes it after this append and looks on for its commit from then."""

    @property
    def signer(self) -> HeadSigner:
        """Loaded (or created) on first use; the server touches it at startup so a bad key file stops it there."""
        if self._signer is None:
            with self._loading:
                if self._signer is None:
                    self._signer = load_signer(self.key_path)
        return self._signer

    def ledger_in(self, conn: Connection) -> LedgerIdentity:
        """The identity of the ledger this writer signs for: read through `conn` the first time, then kept (a
        writer serves one ledger; a server's is read at start, by its `Sequencer`, before any call)."""
        if self._ledger is None:
            self._ledger = read_identity(conn)
        return self._ledger

    def append(self, conn: Connection, entries: Sequence[AuditEntry]) -> list[str]:
        """Insert `entries`, each signed for this writer's ledger, in the caller's transaction; return their rids."""
        if not entries:
            return []
        signer, ledger = self.signer, self.ledger_in(conn).id
        batch = f"{time.time_ns():016x}-{os.urandom(8).hex()}"  # `secrets.token_hex(8)`, less four calls
        rids, params, digests = [], {}, []
        before: tuple[AuditEntry, dict[str, Any]] | None = None
        for index, entry in enumerate(entries):
            record = _audit_record(f"{batch}-{index:04x}", entry, before)
            before = entry, record
            record["key_id"], record["signature"] = signer.key_id, signer.sign_record(record, ledger)
            row = [record[name] for name in RECORD_COLUMNS]
            params.update({f"{name}_{index}": value for name, value in zip(RECORD_COLUMNS, row, strict=True)})
            rids.append(record["rid"])
            digests.append(row_digest(row))
        _insert(len(entries)).send(conn, params)
        with self._remembering:
            self._signed.update(zip(rids, digests, strict=True))
            while len(self._signed) > REMEMBERED:
                self._signed.popitem(last=False)
        if not self.appended.is_set():
            self.appended.set()
        return rids

    def signed_here(self, row: Sequence[Any]) -> bool:
        """Whether `row` (`RECORD_COLUMNS`) is exactly a row this writer signed and inserted, so its signature
        is this writer's key's over this very content; forgets it either way (it is being chained)."""
        with self._remembering:
            digest = self._signed.pop(str(row[0]), None)
        return digest is not None and digest == row_digest(row)


def _audit_record(rid: str, entry: AuditEntry, before: tuple[AuditEntry, dict[str, Any]] | None) -> dict[str, Any]:
    """The stored columns of one audit entry (before signing). `before`: the transaction's previous entry, with its
    columns. A transaction's records are one call's (a settlement's `approved` and its outcome), whose time,
    arguments and decision's rules are the very objects the previous record carried: their renderings are taken
    from it, not made again (an `is` costs no call, a rendering three)."""
    last, done = before if before is not None else (None, {})
    return {
        "rid": rid,
        "at": (
            done["at"]
            if last is not None and entry.at is last.at
            else format_timestamp(datetime.fromtimestamp(entry.at, UTC))
        ),
        "event": entry.event,
        "principal": entry.principal,
        "tool": entry.tool,
        "arguments_json": (
            done["arguments_json"]
            if last is not None and entry.arguments is last.arguments
            else canonical_json(entry.arguments)
        ),
        "policy_version": entry.policy_version,
        "matched_rules_json": (
            done["matched_rules_json"]
            if last is not None and entry.matched_rules is last.matched_rules
            else canonical_json(list(entry.matched_rules))
        ),
        "reason": entry.reason,
        "approval_ref": entry.approval_ref,
        "question_sha256": entry.question_sha256,
        "note": entry.note,
        "result_json": canonical_json(entry.result) if entry.result is not None else None,
        "amount_minor": entry.amount_minor,
        "currency": entry.currency,
        "idempotency_key": entry.idempotency_key,
    }
