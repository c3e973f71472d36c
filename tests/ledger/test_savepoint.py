"""`SqlGateTx.savepoint`: an effect that fails leaves no trace, and the transaction goes on."""

import pytest
from sqlalchemy.exc import OperationalError

from mcp_server.ledger.books import Ledger
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from policy.results import Refusal


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
