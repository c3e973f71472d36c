"""The ledger's rules, observed through its public API on each backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import Connection, text

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.models import Account, CloseReceipt, HistoryLine, TransferReceipt
from mcp_server.ledger.money import MAX_BALANCE_MINOR
from mcp_server.storage import idempotency
from tests.ledger.helpers import customer_total, standard_book
from tests.support import ledger_close, ledger_transfer, snapshot


def test_seed_demo_funds_accounts_once(ledger: Ledger) -> None:
    first = ledger.seed_demo()
    assert [(a.id, a.owner, a.balance_minor) for a in first] == [
        ("ACC-001", "Alice Example", 500000),
        ("ACC-002", "Bob Example", 25000),
        ("ACC-003", "Carol Example", 12000),
    ]
    before = snapshot(ledger.db)
    assert ledger.seed_demo() == first
    assert snapshot(ledger.db) == before
    assert ledger.check_invariants() == []


def test_transfer_moves_exact_amount_and_reports_it(ledger: Ledger) -> None:
    ledger.seed_demo()
    receipt = ledger_transfer(ledger, "ACC-001", "ACC-002", 0.29, memo=" rent ")
    assert receipt.amount_minor == 29
    assert (receipt.from_balance_after_minor, receipt.to_balance_after_minor) == (499971, 25029)
    assert (receipt.currency, receipt.memo) == ("USD", "rent")
    assert ledger.balance("ACC-001").balance == Decimal("4999.71")
    assert ledger.balance("ACC-002").balance_minor == 25029
    assert ledger.check_invariants() == []


def test_a_transfer_can_empty_an_account_but_not_more(ledger: Ledger) -> None:
    ledger.seed_demo()
    ledger_transfer(ledger, "ACC-003", "ACC-002", "120.00")
    assert ledger.balance("ACC-003").balance_minor == 0
    with pytest.raises(LedgerError) as caught:
        ledger_transfer(ledger, "ACC-003", "ACC-002", "0.01")
    assert caught.value.code == "insufficient_funds"


def test_history_is_newest_first_from_the_accounts_side(ledger: Ledger) -> None:
    ledger.seed_demo()
    sent = ledger_transfer(ledger, "ACC-001", "ACC-002", "10.00", memo="lunch")
    received = ledger_transfer(ledger, "ACC-002", "ACC-001", "2.50")
    lines = ledger.history("ACC-001")
    assert [(line.transaction_id, line.amount_minor, line.counterparty) for line in lines[:2]] == [
        (received.transaction_id, 250, "ACC-002"),
        (sent.transaction_id, -1000, "ACC-002"),
    ]
    assert lines[1].memo == "lunch" and lines[1].kind == "transfer"
    assert (lines[2].kind, lines[2].counterparty, lines[2].amount_minor) == ("funding", "SYS-EXTERNAL-USD", 500000)
    assert len(ledger.history("ACC-001", limit=1)) == 1


def test_close_with_sweep_moves_everything_then_closes(ledger: Ledger) -> None:
    ledger.seed_demo()
    receipt = ledger_close(ledger, "ACC-003", sweep_to="ACC-001")
    assert (receipt.swept_to, receipt.swept_amount_minor, receipt.currency) == ("ACC-001", 12000, "USD")
    assert receipt.transaction_id is not None
    closed = ledger.balance("ACC-003")
    assert (closed.status, closed.balance_minor, closed.closed_at) == ("closed", 0, receipt.closed_at)
    assert ledger.balance("ACC-001").balance_minor == 512000
    assert ledger.history("ACC-003")[0].kind == "close_sweep"
    assert ledger.check_invariants() == []


def test_close_of_an_empty_account_moves_nothing(ledger: Ledger) -> None:
    account = ledger.create_account("Nil Balance")
    before = snapshot(ledger.db)["transactions"]
    receipt = ledger_close(ledger, account.id)
    assert (receipt.transaction_id, receipt.swept_amount_minor, receipt.swept_to) == (None, 0, None)
    assert snapshot(ledger.db)["transactions"] == before


def test_closed_account_refuses_every_later_movement(ledger: Ledger) -> None:
    ledger.seed_demo()
    ledger_close(ledger, "ACC-003", sweep_to="ACC-002")
    attempts: list[Callable[[], object]] = [
        lambda: ledger_transfer(ledger, "ACC-003", "ACC-002", "1"),
        lambda: ledger_transfer(ledger, "ACC-001", "ACC-003", "1"),
        lambda: ledger.deposit("ACC-003", "1"),
        lambda: ledger_close(ledger, "ACC-003"),
        lambda: ledger_close(ledger, "ACC-001", sweep_to="ACC-003"),
    ]
    for attempt in attempts:
        with pytest.raises(LedgerError) as caught:
            attempt()
        assert caught.value.code == "account_closed"
        assert "ACC-003" in caught.value.message


def test_create_account_numbers_after_the_highest(ledger: Ledger) -> None:
    ledger.seed_demo()
    ledger.create_account("Tenth", account_id="ACC-010")
    created = ledger.create_account("Next", "JPY")
    assert (created.id, created.currency, created.balance_minor, created.status) == ("ACC-011", "JPY", 0, "open")
    assert [a.id for a in ledger.accounts()] == ["ACC-001", "ACC-002", "ACC-003", "ACC-010", "ACC-011"]


def test_deposit_comes_from_the_external_system_account(ledger: Ledger) -> None:
    account = ledger.create_account("Dee", "KWD")
    receipt = ledger.deposit(account.id, "1.125")
    assert (receipt.amount_minor, receipt.balance_after_minor, receipt.currency) == (1125, 1125, "KWD")
    external = ledger.db.read(
        lambda conn: conn.execute(text("SELECT balance_minor FROM accounts WHERE id = 'SYS-EXTERNAL-KWD'")).scalar()
    )
    assert external == -1125
    assert "SYS-EXTERNAL-KWD" not in [a.id for a in ledger.accounts()]
    assert ledger.check_invariants() == []


def test_models_round_trip_through_json(ledger: Ledger) -> None:
    ledger.seed_demo()
    transfer = ledger_transfer(ledger, "ACC-001", "ACC-002", "1.00", memo="x")
    close = ledger_close(ledger, "ACC-003", sweep_to="ACC-001")
    account = ledger.balance("ACC-001")
    line = ledger.history("ACC-001")[0]
    for model in (transfer, close, account, line):
        wire = json.loads(json.dumps(model.model_dump(mode="json")))
        assert type(model).model_validate(wire) == model
    assert account.model_dump(mode="json")["balance"] == "5119.00"
    assert isinstance(line, HistoryLine) and isinstance(close, CloseReceipt)
    assert isinstance(transfer, TransferReceipt) and isinstance(account, Account)


def test_composable_operations_share_the_callers_transaction(ledger: Ledger) -> None:
    ledger.seed_demo()
    before = snapshot(ledger.db)

    class Abort(Exception):
        pass

    def work(conn: Connection) -> None:
        ledger.transfer_in(conn, "ACC-001", "ACC-002", 100_00, "part one")
        ledger.close_in(conn, "ACC-003", "ACC-002")
        idempotency.remember(conn, "op-1", "digest", {"ok": True})
        assert ledger.account_in(conn, "ACC-002").balance_minor == 25000 + 10000 + 12000
        raise Abort

    with pytest.raises(Abort):
        ledger.db.run(work)
    assert snapshot(ledger.db) == before

    def commit(conn: Connection) -> TransferReceipt:
        assert idempotency.recall(conn, "op-1", "digest") is None
        receipt = ledger.transfer_in(conn, "ACC-001", "ACC-002", 100_00, idempotency_key="op-1")
        idempotency.remember(conn, "op-1", "digest", receipt.model_dump(mode="json"))
        return receipt

    receipt = ledger.db.run(commit)
    assert ledger.db.read(lambda conn: idempotency.recall(conn, "op-1", "digest")) == receipt.model_dump(mode="json")
    assert customer_total(ledger.db) == 500000 + 25000 + 12000


@pytest.mark.parametrize("amount", [0, -1, True, 10_000_000_01, 1.5])
def test_transfer_in_checks_minor_units(ledger: Ledger, amount: object) -> None:
    standard_book(ledger)
    with pytest.raises(LedgerError) as caught:
        ledger.db.run(lambda conn: ledger.transfer_in(conn, "ACC-001", "ACC-002", amount))  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == ("invalid_amount", "amount")


def test_max_amount_is_configurable(ledger: Ledger) -> None:
    small = Ledger(ledger.db, max_amount_minor=100_00)
    small.seed_demo()
    ledger_transfer(small, "ACC-001", "ACC-002", "100.00")
    with pytest.raises(LedgerError, match=r"exceeds the limit of \$100.00"):
        ledger_transfer(small, "ACC-001", "ACC-002", "100.01")


def test_no_balance_grows_past_what_every_json_reader_holds_exactly(ledger: Ledger) -> None:
    """Each deposit may be as large as `max_amount_minor` allows (up to 10^15), but many of them summed past 2^53
    into a balance a JSON reader rounds, and past 2^63 into one SQLite stores as a float. The system account owes
    every deposit of its currency, so it reaches `MAX_BALANCE_MINOR` first: a deposit past it is refused, changing
    nothing, and no customer balance, a share of it, can pass it either."""
    big = Ledger(ledger.db, max_amount_minor=10**15)
    rich, other = big.create_account("Rita Rich").id, big.create_account("Olaf Other").id
    big.deposit(other, "1.00")
    for _ in range(MAX_BALANCE_MINOR // 10**15):
        big.deposit(rich, "10000000000000.00")
    big.deposit(rich, "71992547408.91")  # the rest: the system account now owes the most a balance holds
    before = snapshot(ledger.db)

    with pytest.raises(LedgerError) as refused:
        big.deposit(rich, "0.01")

    assert (refused.value.code, refused.value.field) == ("balance_limit", "amount")
    assert "SYS-EXTERNAL-USD would hold more than $90,071,992,547,409.91" in refused.value.message
    assert snapshot(ledger.db) == before
    ledger_transfer(big, other, rich, "1.00")
    assert big.balance(rich).balance_minor == MAX_BALANCE_MINOR
    assert big.check_invariants() == []
