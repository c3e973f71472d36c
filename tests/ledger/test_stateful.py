"""Hypothesis state machine: random transfers, deposits, closes and replays against a model.

After every step the books must balance (``check_invariants``), every account must hold
exactly what the model says, replays must have moved nothing, and closed accounts must
never change again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import text

from mcp_server.ledger.books import Ledger
from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.money import to_decimal
from tests.support import ledger_close, ledger_transfer, snapshot

OPERATIONS: dict[str, Callable[..., Any]] = {
    "transfer": ledger_transfer,
    "close": ledger_close,
    "deposit": Ledger.deposit,
}
"""How the machine runs each operation on the bare ledger, by name."""
ACCOUNTS = 5  # per example: four USD accounts and one EUR account
SETTINGS = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

index = st.integers(0, ACCOUNTS - 1)
cents = st.integers(1, 400_00)


def test_ledger_state_machine(ledger: Ledger) -> None:
    class Machine(LedgerMachine):
        pass

    Machine.ledger = ledger
    run_state_machine_as_test(Machine, settings=SETTINGS)


class LedgerMachine(RuleBasedStateMachine):
    ledger: Ledger

    def __init__(self) -> None:
        super().__init__()
        currencies = ["USD"] * (ACCOUNTS - 1) + ["EUR"]
        self.ids = [self.ledger.create_account("Model Owner", currency).id for currency in currencies]
        self.currency = dict(zip(self.ids, currencies, strict=True))
        self.balance = dict.fromkeys(self.ids, 0)
        self.closed: dict[str, int] = {}  # account id -> entry count when it closed
        self.keyed: dict[str, tuple[str, dict[str, Any], Any]] = {}  # key -> (operation, request, receipt)
        self.serial = 0

    def new_key(self) -> str:
        self.serial += 1
        return f"{self.ids[0]}-op-{self.serial}"

    def expected_refusal(self, *accounts: str) -> str | None:
        if any(account in self.closed for account in accounts):
            return "account_closed"
        return None

    @rule(i=index, j=index, amount=cents, keyed=st.booleans())
    def transfer(self, i: int, j: int, amount: int, keyed: bool) -> None:
        source, target = self.ids[i], self.ids[j]
        request = {
            "from_account": source,
            "to_account": target,
            "amount": str(to_decimal(amount, self.currency[source])),
            "memo": f"step {self.serial}",
        }
        expected = (
            ("same_account" if source == target else None)
            or self.expected_refusal(source, target)
            or ("currency_mismatch" if self.currency[source] != self.currency[target] else None)
            or ("insufficient_funds" if amount > self.balance[source] else None)
        )
        key = self.new_key() if keyed else None
        outcome = self.attempt("transfer", request, key, expected)
        if outcome is not None:
            self.balance[source] -= amount
            self.balance[target] += amount
            assert (outcome.from_balance_after_minor, outcome.to_balance_after_minor) == (
                self.balance[source],
                self.balance[target],
            )

    @rule(i=index, amount=cents, keyed=st.booleans())
    def deposit(self, i: int, amount: int, keyed: bool) -> None:
        account = self.ids[i]
        request = {"account_id": account, "amount": str(to_decimal(amount, self.currency[account]))}
        key = self.new_key() if keyed else None
        if self.attempt("deposit", request, key, self.expected_refusal(account)) is not None:
            self.balance[account] += amount

    @rule(i=index, sweep=st.none() | index, keyed=st.booleans())
    def close(self, i: int, sweep: int | None, keyed: bool) -> None:
        account = self.ids[i]
        sweep_to = None if sweep is None else self.ids[sweep]
        expected = (
            ("same_account" if sweep_to == account else None)
            or self.expected_refusal(account, *([sweep_to] if sweep_to else []))
            or (
                "currency_mismatch"
                if sweep_to is not None and self.currency[sweep_to] != self.currency[account]
                else None
            )
            or ("balance_not_zero" if sweep_to is None and self.balance[account] else None)
        )
        key = self.new_key() if keyed else None
        outcome = self.attempt("close", {"account_id": account, "sweep_to": sweep_to}, key, expected)
        if outcome is not None:
            assert outcome.swept_amount_minor == self.balance[account]
            if sweep_to is not None:
                self.balance[sweep_to] += self.balance[account]
            self.balance[account] = 0
            self.closed[account] = self.entry_count(account)

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keyed)))
        operation, request, receipt = self.keyed[key]
        before = snapshot(self.ledger.db)
        assert OPERATIONS[operation](self.ledger, **request, idempotency_key=key) == receipt
        assert snapshot(self.ledger.db) == before

    @precondition(lambda self: bool(self.keyed))
    @rule(data=st.data())
    def conflicting_replay(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.keyed)))
        _, request, _ = self.keyed[key]
        other = {"from_account": self.ids[0], "to_account": self.ids[1], "amount": "0.01", "memo": "other"}
        if other == request:
            other["memo"] = "another"
        before = snapshot(self.ledger.db)
        try:
            ledger_transfer(self.ledger, **other, idempotency_key=key)
        except LedgerError as error:
            assert error.code == "idempotency_conflict"
        else:
            raise AssertionError("a reused key moved money for a different request")
        assert snapshot(self.ledger.db) == before

    def attempt(self, operation: str, request: dict[str, Any], key: str | None, expected: str | None) -> Any:
        """Run one request; assert it fails exactly as the model predicts; return the receipt."""
        try:
            receipt = OPERATIONS[operation](self.ledger, **request, idempotency_key=key)
        except LedgerError as error:
            assert error.code == expected, (operation, request, error)
            return None
        assert expected is None, (operation, request, "should have failed with", expected)
        if key is not None:
            self.keyed[key] = (operation, request, receipt)
        return receipt

    def entry_count(self, account: str) -> int:
        return int(
            self.ledger.db.read(
                lambda conn: conn.execute(
                    text("SELECT COUNT(*) FROM entries WHERE account_id = :id"), {"id": account}
                ).scalar_one()
            )
        )

    @invariant()
    def books_balance(self) -> None:
        assert self.ledger.check_invariants() == []

    @invariant()
    def balances_match_the_model(self) -> None:
        stored = {a.id: a.balance_minor for a in self.ledger.accounts() if a.id in self.balance}
        assert stored == self.balance

    @invariant()
    def closed_accounts_never_change(self) -> None:
        for account, entries in self.closed.items():
            state = self.ledger.balance(account)
            assert (state.status, state.balance_minor) == ("closed", 0)
            assert self.entry_count(account) == entries
