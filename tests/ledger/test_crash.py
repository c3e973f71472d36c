"""Kill -9 mid-burst: after reopening, the books balance and every acknowledged transfer is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from tests.ledger import crash_worker
from tests.support import ledger_transfer, snapshot

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where the worker runs as `-m tests.ledger.crash_worker`."""

ACKNOWLEDGED_BEFORE_KILL = 60


def test_sigkill_loses_no_acknowledged_transfer(database_url: str) -> None:
    setup = Database.open(database_url)
    Ledger(setup).seed_demo()
    setup.close()

    acknowledged = run_and_kill(database_url, "crash")

    db = Database.open(database_url)
    try:
        ledger = Ledger(db)
        assert ledger.check_invariants() == []
        committed = db.read(
            lambda conn: {
                key
                for (key,) in conn.execute(
                    text(
                        "SELECT t.idempotency_key FROM transactions t"
                        " JOIN idempotency_keys k ON k.key = t.idempotency_key"
                    )
                )
            }
        )
        assert set(acknowledged) <= committed
        assert len(committed) - len(acknowledged) <= 1  # at most one committed but not yet printed
        # The burst alternates direction, so ACC-001 is down $1 exactly when an odd number committed.
        assert ledger.balance("ACC-001").balance_minor == 500000 - 100 * (len(committed) % 2)

        before = snapshot(db)
        last = len(acknowledged) - 1
        replayed = ledger_transfer(ledger, **crash_worker.request(last), idempotency_key=acknowledged[-1])
        assert replayed.memo == f"burst {last}"
        assert snapshot(db) == before
    finally:
        db.close()


def run_and_kill(url: str, prefix: str) -> list[str]:
    """Start the worker, let it acknowledge some transfers, then SIGKILL it mid-burst."""
    process = subprocess.Popen(
        [sys.executable, "-m", crash_worker.__name__, url, prefix], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            acknowledged.append(line.strip())
        os.kill(process.pid, signal.SIGKILL)
        process.wait(30)
        # From the same reader: `readline` may hold lines it read ahead, which `communicate` (reading the
        # pipe's descriptor) would skip.
        rest = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    acknowledged.extend(line.strip() for line in rest.splitlines() if line.strip())
    assert process.returncode == -signal.SIGKILL
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL, "the worker never got going"
    assert acknowledged == [f"{prefix}-{n}" for n in range(len(acknowledged))]
    return acknowledged
