"""Shared test helpers: a fingerprint of everything the ledger stores, and a standard book."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database


def snapshot(db: Database) -> dict[str, Any]:
    """Balances, statuses and row counts: equal before and after means nothing changed."""

    def read(conn: Connection) -> dict[str, Any]:
        accounts = conn.execute(text("SELECT id, status, balance_minor FROM accounts ORDER BY id")).all()
        counts = {
            table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in ("transactions", "entries", "idempotency_keys")
        }
        return {"accounts": [tuple(row) for row in accounts], **counts}

    return db.read(read)


def standard_book(ledger: Ledger) -> None:
    """Demo accounts (ACC-001 $5,000, ACC-002 $250, ACC-003 $120), ACC-004 in EUR with €50,
    and ACC-005 closed."""
    ledger.seed_demo()
    ledger.create_account("Eve Euro", "EUR", "ACC-004")
    ledger.deposit("ACC-004", "50.00")
    ledger.create_account("Zed Closed", "USD", "ACC-005")
    ledger.close("ACC-005")


def customer_total(db: Database) -> int:
    return int(
        db.read(
            lambda conn: conn.execute(
                text("SELECT COALESCE(SUM(balance_minor), 0) FROM accounts WHERE kind = 'customer'")
            ).scalar_one()
        )
    )
