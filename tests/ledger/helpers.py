"""Ledger test helpers: a standard book, the customers' total (the fingerprint `snapshot` is in tests.support),
and waiting for the event loop's PostgreSQL connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database, WouldWait
from tests.support import ledger_close


def standard_book(ledger: Ledger) -> None:
    """Demo accounts (ACC-001 $5,000, ACC-002 $250, ACC-003 $120), ACC-004 in EUR with €50,
    and ACC-005 closed."""
    ledger.seed_demo()
    ledger.create_account("Eve Euro", "EUR", "ACC-004")
    ledger.deposit("ACC-004", "50.00")
    ledger.create_account("Zed Closed", "USD", "ACC-005")
    ledger_close(ledger, "ACC-005")


def customer_total(db: Database) -> int:
    return int(
        db.read(
            lambda conn: conn.execute(
                text("SELECT COALESCE(SUM(balance_minor), 0) FROM accounts WHERE kind = 'customer'")
            ).scalar_one()
        )
    )


def when_ready(work: Callable[[], Any], bound: float = 10.0) -> Any:
    """`work` once the loop's connection, opening in the background, is ready (`WouldWait` until then)."""
    deadline = time.monotonic() + bound
    while True:
        try:
            return work()
        except WouldWait:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
