"""`SqlGateTx.savepoint`: an effect that fails leaves no trace, and the transaction goes on."""

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from policy.results import Refusal
from tests.support import snapshot


def accounts(ledger: Ledger) -> tuple[str, str]:
    source, target = ledger.create_account("Source").id, ledger.create_account("Target").id
    ledger.deposit(source, "100")
    return source, target


def test_a_refused_effect_is_undone_and_the_rest_commits(database: Database) -> None:
    ledger = Ledger(database)
    source, target = accounts(ledger)

    def work(tx: SqlGateTx) -> None:
        ledger.transfer_in(tx.conn, source, target, 100, None)
        with pytest.raises(Refusal), tx.savepoint():
            ledger.transfer_in(tx.conn, source, target, 5_000, None)
            raise Refusal("test_refusal", "refused after writing")
        with tx.savepoint():
            ledger.transfer_in(tx.conn, source, target, 20, None)

    SqlGateStore(database).transaction(work)
    assert ledger.balance(target).balance_minor == 120
    assert ledger.check_invariants() == []


def test_a_failed_statement_inside_leaves_the_transaction_usable(database: Database) -> None:
    """PostgreSQL aborts the whole transaction on an error unless it is rolled back to the savepoint."""
    ledger = Ledger(database)
    source, target = accounts(ledger)

    def work(tx: SqlGateTx) -> int:
        with pytest.raises(Exception), tx.savepoint():  # noqa: B017 - whichever driver error it is
            tx.conn.exec_driver_sql("SELECT no_such_column FROM accounts")
        ledger.transfer_in(tx.conn, source, target, 7, None)
        return ledger.account_in(tx.conn, target).balance_minor

    assert SqlGateStore(database).transaction(work) == 7
    assert ledger.balance(target).balance_minor == 7


def test_sqlite_releases_an_effect_that_succeeded(database: Database) -> None:
    """Writes after the effect (the approval, the audit records) are not copied to a savepoint's sub-journal,
    which spilled to a temporary file every settlement: no savepoint is left to roll back to."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps the savepoint until the commit: releasing it would cost a statement")
    ledger = Ledger(database)
    source, target = accounts(ledger)

    def work(tx: SqlGateTx) -> None:
        with tx.savepoint():
            ledger.transfer_in(tx.conn, source, target, 30, None)
        with pytest.raises(OperationalError, match="no such savepoint"):
            tx.conn.exec_driver_sql("ROLLBACK TO SAVEPOINT effect")

    SqlGateStore(database).transaction(work)
    assert ledger.balance(target).balance_minor == 30


def effects(ledger: Ledger, source: str, target: str) -> dict[str, Callable[[Connection], object]]:
    """A settlement's effects by tool: a transfer, and a close that sweeps the balance away."""
    return {
        "transfer": lambda conn: ledger.transfer_in(conn, source, target, 30, None),
        "close": lambda conn: ledger.close_in(conn, source, target),
    }


@pytest.mark.parametrize("effect", ["transfer", "close"])
def test_a_write_that_fails_after_an_effect_leaves_none_of_it(database: Database, effect: str) -> None:
    """The settlement's writes after its effect (approval, key, audit records) fail: the whole transaction
    rolls back, the effect with it, though SQLite released the effect's savepoint (a RELEASE outside a BEGIN
    would have been its COMMIT)."""
    ledger = Ledger(database)
    source, target = accounts(ledger)
    run = effects(ledger, source, target)[effect]
    before = snapshot(database)

    def work(tx: SqlGateTx) -> None:
        with tx.savepoint():
            run(tx.conn)
        tx.conn.exec_driver_sql(f"UPDATE accounts SET balance_minor = -1 WHERE id = '{target}'")  # CHECK refuses

    with pytest.raises(IntegrityError):
        SqlGateStore(database).transaction(work)
    assert snapshot(database) == before, "no money moved, no account closed"
    assert ledger.check_invariants() == []


@pytest.mark.parametrize("effect", ["transfer", "close"])
def test_a_second_effect_refused_in_the_transaction_undoes_only_its_own(database: Database, effect: str) -> None:
    """Two settlements in one transaction (as an expiry batch may hold): the first effect succeeded (released on
    SQLite), the second's refusal rolls back to its own savepoint, and the first commits."""
    ledger = Ledger(database)
    source, target = accounts(ledger)
    other = ledger.create_account("Other").id
    run = effects(ledger, source, target)[effect]

    def work(tx: SqlGateTx) -> None:
        with tx.savepoint():
            run(tx.conn)
        with pytest.raises(Refusal), tx.savepoint():
            ledger.transfer_in(tx.conn, target, other, 20, None)
            raise Refusal("test_refusal", "refused after writing")

    SqlGateStore(database).transaction(work)
    moved = 30 if effect == "transfer" else 10_000
    assert [ledger.balance(each).balance_minor for each in (source, target, other)] == [10_000 - moved, moved, 0]
    assert ledger.balance(source).status == ("open" if effect == "transfer" else "closed")
    assert ledger.check_invariants() == []


def rolled_back_whole(database: Database) -> tuple[Ledger, str, str, dict[str, Any]]:
    """A ledger with two accounts, and the database as it was, for a test of an error that makes SQLite roll
    the whole transaction back (PostgreSQL keeps an aborted transaction open until its ROLLBACK: skipped)."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps an aborted transaction open until its ROLLBACK")
    ledger = Ledger(database)
    source, target = accounts(ledger)
    return ledger, source, target, snapshot(database)


def interrupting(tx: SqlGateTx) -> None:
    """Fail a statement with an error that makes SQLite roll the whole transaction back."""
    driver = tx.conn.connection.driver_connection
    assert driver is not None
    driver.create_function("interrupted", 0, lambda: driver.interrupt() or 0)
    tx.conn.exec_driver_sql("UPDATE accounts SET owner = owner WHERE interrupted() = 0")


def test_an_effect_whose_error_rolled_back_the_whole_transaction_is_reported_by_that_error(
    database: Database,
) -> None:
    """Some SQLite errors roll the whole transaction back (an interrupt here; a full disk, an I/O error): no
    savepoint is left to roll back to, and "no such savepoint" took the place of the effect's own error, so a
    database out of reach was reported as a statement the database refused (an internal error)."""
    ledger, source, target, before = rolled_back_whole(database)

    def work(tx: SqlGateTx) -> None:
        with tx.savepoint():
            ledger.transfer_in(tx.conn, source, target, 30, None)
            interrupting(tx)

    with pytest.raises(LedgerError) as failed:
        SqlGateStore(database).transaction(work)
    assert failed.value.code == ErrorCode.DATABASE_UNAVAILABLE
    assert "interrupted" in str(failed.value.__cause__)
    assert snapshot(database) == before


def test_a_refusal_after_sqlite_rolled_the_whole_transaction_back_ends_it(database: Database) -> None:
    """An effect that turned such an error into a refusal is not taken for one undone: the settlement would go
    on with its writes outside any transaction, each committed on its own."""
    ledger, source, target, before = rolled_back_whole(database)

    def work(tx: SqlGateTx) -> None:
        with contextlib.suppress(Refusal), tx.savepoint():  # as `Settlement.execute` takes a refusal
            ledger.transfer_in(tx.conn, source, target, 30, None)
            try:
                interrupting(tx)
            except DBAPIError as exc:
                raise Refusal("test_refusal", "refused") from exc
        ledger.transfer_in(tx.conn, source, target, 5, None)  # the settlement's writes after a refused effect

    with pytest.raises(OperationalError, match="no such savepoint"):
        SqlGateStore(database).transaction(work)
    assert snapshot(database) == before
