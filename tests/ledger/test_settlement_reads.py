"""A settlement's read of both accounts and what the caller holds on them comes after its lock: on SQLite one
statement (`Ledger._locks_rows`), which its BEGIN IMMEDIATE puts after the file's write lock (PostgreSQL, which
locks the rows and then reads the holding, is `tests/server/test_entitlement_races.py`'s)."""

import sqlite3

import pytest

from mcp_server.ledger.books import AccountRow, Ledger
from mcp_server.ledger.entitlements import Held, grant_in
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx


def test_no_other_writer_comes_between_a_sqlite_settlements_one_read_and_its_writes(
    backend: str, database: Database, database_url: str
) -> None:
    """Another replica on the same file revoking the caller's relation just after the settlement read it finds
    the file locked: the revocation comes after the settlement's movement, never between."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL locks the rows, then reads the holding")
    ledger = Ledger(database)
    source, target = ledger.create_account("Source").id, ledger.create_account("Target").id
    ledger.deposit(source, "1")
    database.run(lambda conn: grant_in(conn, "alice", "owner", source, "admin"))
    revoke = "DELETE FROM account_access WHERE principal = 'alice'"
    seen: list[Held] = []

    def revoked_meanwhile(_row: AccountRow, held: Held) -> None:
        replica = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                replica.execute(revoke)
        finally:
            replica.close()
        seen.append(held)

    def settle(tx: SqlGateTx) -> None:
        assert tx.settles
        plan = ledger.plan_transfer_in(tx.ledger, source, target, "0.30", holder="alice", seen=revoked_meanwhile)
        ledger.post_transfer_in(tx.ledger, plan.debit, plan.credit, plan.amount_minor)

    SqlGateStore(database).transaction(settle)
    assert seen == [Held((), {source: ("owner",)})]
    assert ledger.balance(target).balance_minor == 30
