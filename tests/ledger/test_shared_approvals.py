"""`SqlGateTx.create_approval` for calls that share a question (one idempotency key): one pending approval
per binding, whatever other transactions do between its statements."""

from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mcp_server.ledger.errors import LedgerError
from mcp_server.storage import gate_store
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from policy.store import Approval
from tests.server.faults import terminate


def approval(ref: str) -> Approval:
    return Approval(
        ref=ref,
        binding="binding-1",
        tool="transfer_funds",
        arguments={"amount": "1"},
        principal="local",
        policy_version="v1",
        question=f"question {ref}",
        created_at=0.0,
        expires_at=300.0,
        asked_digest=f"asked {ref}",
    )


def ask_ahead(tx: SqlGateTx, ref: str, meanwhile: Callable[[], object] = lambda: None) -> Approval:
    """As a question transaction asks (`policy.gate.Gate._ask`): the binding's pending approval announced, then
    read with the transaction's first round trip (PostgreSQL); `meanwhile` runs; then the approval is created."""
    tx.expect_pending("binding-1")
    tx.waiting("local", 0.0)
    meanwhile()
    return tx.create_approval(approval(ref), shared=True)


@pytest.mark.parametrize("ahead", [False, True], ids=["offered first", "read ahead"])
def test_a_pending_approval_is_shared(database: Database, ahead: bool) -> None:
    store = SqlGateStore(database)
    first = store.transaction(lambda tx: tx.create_approval(approval("APR-1"), shared=True))
    if ahead:
        again = store.transaction(lambda tx: ask_ahead(tx, "APR-2"))
    else:
        again = store.transaction(lambda tx: tx.create_approval(approval("APR-2"), shared=True))
    assert first.ref == again.ref == "APR-1"


def test_one_asked_by_another_caller_after_the_read_ahead_is_shared_on_the_second_run(database: Database) -> None:
    """Read ahead, no approval was pending, so the new one's insert goes with the COMMIT; another caller's commits
    first, and the unique binding fails that COMMIT. The work runs once more, offering its approval first, and
    shares theirs: one question, and no error for the caller."""
    if database.dialect == "sqlite":
        pytest.skip("a SQLite write transaction holds the whole file: nothing commits between its statements")
    store = SqlGateStore(database)
    runs: list[int] = []

    def another_caller_asks() -> None:
        if len(runs) == 1:
            SqlGateStore(database).transaction(lambda other: other.create_approval(approval("APR-1"), shared=True))

    def ask(tx: SqlGateTx) -> Approval:
        runs.append(len(runs))
        return ask_ahead(tx, "APR-2", another_caller_asks)

    assert store.transaction(ask).ref == "APR-1"
    assert runs == [0, 1]
    assert store.transaction(lambda tx: tx.lock_approval("APR-2")) is None


def test_one_settled_between_the_insert_and_the_read_leaves_the_binding_to_the_new_one(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert meets the pending approval; another transaction settles it and commits before it is read
    (PostgreSQL: each statement its own snapshot). The new question is then inserted, not lost."""
    if database.dialect == "sqlite":
        pytest.skip("a SQLite write transaction holds the whole file: nothing commits between its statements")
    store = SqlGateStore(database)
    pending = store.transaction(lambda tx: tx.create_approval(approval("APR-1"), shared=True))
    original = gate_store._BY_PENDING_BINDING
    settled: list[str] = []

    class SettledMeanwhile:
        def arrived(self, conn: object, params: dict[str, str]) -> bool:
            return original.arrived(conn, params)  # type: ignore[arg-type]

        def one(self, conn: object, params: dict[str, str]) -> object:
            if not settled:
                settled.append(pending.ref)
                SqlGateStore(database).transaction(
                    lambda tx: tx.settle_approval(replace(pending, status="rejected", outcome={"status": "rejected"}))
                )
            return original.one(conn, params)  # type: ignore[arg-type]

    monkeypatch.setattr(gate_store, "_BY_PENDING_BINDING", SettledMeanwhile())

    def ask(tx: SqlGateTx) -> Approval:
        return tx.create_approval(approval("APR-2"), shared=True)

    asked = store.transaction(ask)
    assert settled == ["APR-1"] and asked.ref == "APR-2"
    monkeypatch.undo()
    assert store.transaction(lambda tx: tx.create_approval(approval("APR-3"), shared=True)).ref == "APR-2"


def test_an_approval_settled_already_is_not_settled_again(database: Database) -> None:
    """The settling write is queued, not waited on (PostgreSQL: no round trip of its own), so the database itself
    refuses a second settlement: the transaction fails and the first outcome stays."""
    store = SqlGateStore(database)
    pending = store.transaction(lambda tx: tx.create_approval(approval("APR-1"), shared=True))
    store.transaction(lambda tx: tx.settle_approval(replace(pending, status="rejected", outcome={"status": "r"})))
    with pytest.raises(IntegrityError, match="status"):
        store.transaction(lambda tx: tx.settle_approval(replace(pending, status="executed", outcome={"status": "e"})))
    stored = store.transaction(lambda tx: tx.lock_approval("APR-1"))
    assert stored is not None and (stored.status, stored.outcome) == ("rejected", {"status": "r"})


def test_a_question_lost_in_its_second_run_leaves_the_winners_approval_to_the_keys_retry(database: Database) -> None:
    """The second run (another caller's approval committed first) loses its connection, as a server killed there
    would: nothing of it stays, the caller is told the database was unavailable, and its retry under the key
    shares the other caller's approval: one approval for the binding."""
    if database.dialect == "sqlite":
        pytest.skip("a SQLite write transaction holds the whole file: nothing commits between its statements")
    store = SqlGateStore(database)
    runs: list[int] = []

    def ask(tx: SqlGateTx) -> Approval:
        runs.append(len(runs))

        def meanwhile() -> None:
            if len(runs) == 1:
                SqlGateStore(database).transaction(lambda other: other.create_approval(approval("APR-1"), shared=True))
            else:  # the second run, after its first round trip: the server dies here
                terminate(tx.conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]

        return ask_ahead(tx, "APR-2", meanwhile)

    with pytest.raises(LedgerError, match="unavailable"):
        store.transaction(ask)
    assert runs == [0, 1]
    assert store.transaction(lambda tx: ask_ahead(tx, "APR-3")).ref == "APR-1"
    refs = database.read(lambda conn: [r for (r,) in conn.execute(text("SELECT ref FROM approvals"))])
    assert refs == ["APR-1"]
