"""Subprocess for the crash test: transfer forever, printing each key once its commit returned.

Usage (from the repository root): python -m tests.ledger.crash_worker DATABASE_URL KEY_PREFIX
"""

from __future__ import annotations

import itertools
import sys
from typing import Any

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from tests.support import ledger_transfer


def request(n: int) -> dict[str, Any]:
    """The n-th transfer of the burst: $1 back and forth between ACC-001 and ACC-002."""
    source, target = ("ACC-001", "ACC-002") if n % 2 == 0 else ("ACC-002", "ACC-001")
    return {"from_account": source, "to_account": target, "amount": "1.00", "memo": f"burst {n}"}


def main(url: str, prefix: str) -> None:
    ledger = Ledger(Database.open(url))
    for n in itertools.count():
        key = f"{prefix}-{n}"
        ledger_transfer(ledger, **request(n), idempotency_key=key)
        print(key, flush=True)  # acknowledged: the transaction is committed


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
