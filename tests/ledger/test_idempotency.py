"""Same key, same request: one movement and the original receipt. Same key, other request:
a conflict. Both hold across re-opening the database."""

from __future__ import annotations

import pytest

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.storage.database import Database
from tests.support import ledger_close, ledger_transfer, snapshot


def test_replay_returns_the_original_receipt_and_moves_nothing(ledger: Ledger) -> None:
    ledger.seed_demo()
    first = ledger_transfer(ledger, "ACC-001", "ACC-002", "25.00", memo="rent", idempotency_key="k-1")
    after_first = snapshot(ledger.db)

    replay = ledger_transfer(ledger, "ACC-001", "ACC-002", 25, memo="rent", idempotency_key="k-1")

    assert replay == first
    assert snapshot(ledger.db) == after_first
    assert ledger.balance("ACC-001").balance_minor == 500000 - 2500


@pytest.mark.parametrize(
    "other",
    [
        {"amount": "25.01"},
        {"to_account": "ACC-003"},
        {"memo": "not rent"},
        {"from_account": "ACC-002", "to_account": "ACC-001"},
    ],
)
def test_same_key_for_another_request_is_a_conflict(ledger: Ledger, other: dict[str, object]) -> None:
    ledger.seed_demo()
    request: dict[str, object] = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "25.00"}
    ledger_transfer(ledger, **request, memo="rent", idempotency_key="k-1")  # type: ignore[arg-type]
    before = snapshot(ledger.db)
    with pytest.raises(LedgerError) as caught:
        ledger_transfer(ledger, **{**request, "memo": "rent", **other}, idempotency_key="k-1")  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == ("idempotency_conflict", "idempotency_key")
    assert snapshot(ledger.db) == before


def test_keys_are_shared_across_operations(ledger: Ledger) -> None:
    ledger.seed_demo()
    ledger_close(ledger, "ACC-003", sweep_to="ACC-002", idempotency_key="k-9")
    with pytest.raises(LedgerError) as caught:
        ledger.deposit("ACC-001", "1", idempotency_key="k-9")
    assert caught.value.code == "idempotency_conflict"


def test_close_and_deposit_replays(ledger: Ledger) -> None:
    ledger.seed_demo()
    closed = ledger_close(ledger, "ACC-003", sweep_to="ACC-002", idempotency_key="close-3")
    deposited = ledger.deposit("ACC-001", "7.00", idempotency_key="dep-1")
    before = snapshot(ledger.db)
    assert ledger_close(ledger, "ACC-003", sweep_to="ACC-002", idempotency_key="close-3") == closed
    assert ledger.deposit("ACC-001", 7, idempotency_key="dep-1") == deposited
    assert snapshot(ledger.db) == before


def test_a_refused_request_stores_nothing_so_it_can_succeed_later(ledger: Ledger) -> None:
    ledger.seed_demo()
    with pytest.raises(LedgerError, match="less than"):
        ledger_transfer(ledger, "ACC-002", "ACC-001", "300.00", idempotency_key="k-2")
    ledger.deposit("ACC-002", "50.00")
    receipt = ledger_transfer(ledger, "ACC-002", "ACC-001", "300.00", idempotency_key="k-2")
    assert receipt.from_balance_after_minor == 0


def test_keys_and_results_survive_reopening(database_url: str) -> None:
    db = Database.open(database_url)
    ledger = Ledger(db)
    ledger.seed_demo()
    first = ledger_transfer(ledger, "ACC-001", "ACC-002", "3.00", idempotency_key="durable")
    db.close()

    reopened = Ledger(Database.open(database_url))
    try:
        before = snapshot(reopened.db)
        assert ledger_transfer(reopened, "ACC-001", "ACC-002", "3.00", idempotency_key="durable") == first
        assert snapshot(reopened.db) == before
        with pytest.raises(LedgerError, match="different request"):
            ledger_transfer(reopened, "ACC-001", "ACC-002", "4.00", idempotency_key="durable")
    finally:
        reopened.db.close()
