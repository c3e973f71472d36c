"""Two approved calls on one account, settled one after the other or at once (both backends).

A close that sweeps an account and a transfer out of it are both approved: whichever settles first runs,
and the other, whose question no longer describes the ledger, runs nothing and says what changed. Two
transfers that together would overdraw the payer: one runs. Money is conserved throughout.
"""

import threading
from typing import Any

import pytest
from sqlalchemy import text

from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate, Opening
from policy.loader import load_policy
from policy.results import GateResult, Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import TEST_POLICY


def asked(gate: Gate, tool: str, args: dict[str, Any]) -> Opening:
    opening = gate.open(Call(tool, gate.actions[tool].canonical(args), "local"), human_reachable=True)
    assert opening.approval is not None, opening
    return opening


def approved(gate: Gate, openings: list[Opening], together: bool) -> list[GateResult]:
    """Each opening's approval answered yes, in order, or all at once from threads."""
    yes = Verdict(VerdictKind.APPROVE)
    if not together:
        return [gate.conclude(opening, yes) for opening in openings]
    results: dict[int, GateResult] = {}
    start = threading.Barrier(len(openings))

    def answer(index: int, opening: Opening) -> None:
        start.wait()
        results[index] = gate.conclude(opening, yes)

    threads = [threading.Thread(target=answer, args=item) for item in enumerate(openings)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return [results[index] for index in range(len(openings))]


@pytest.mark.parametrize("order", ["close-first", "transfer-first", "together"])
def test_a_close_and_a_transfer_out_of_one_account_both_approved_run_once(ledger_harness: Harness, order: str) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    account, keeper, payee = (ledger_harness.open_account(b) for b in ("100", "0", "0"))
    close = asked(gate, "close_account", {"account_id": account, "sweep_to": keeper})
    transfer = asked(gate, "transfer_funds", {"from_account": account, "to_account": payee,
                                                                "amount": "30"})  # fmt: skip
    openings = [transfer, close] if order == "transfer-first" else [close, transfer]

    results = approved(gate, openings, together=order == "together")

    executed = [r for r in results if r.status is Status.EXECUTED]
    refused = [r for r in results if r.status is not Status.EXECUTED]
    assert len(executed) == 1 and len(refused) == 1, results
    assert refused[0].error is not None
    assert refused[0].error["code"] in ("account_closed", "changed_since_approval"), refused[0]
    if refused[0].error["code"] == "changed_since_approval":
        assert "balance to sweep: $100.00 when asked, $70.00 now" in refused[0].message
    balances = [ledger_harness.balance(a) for a in (account, keeper, payee)]
    assert balances in ([0, 100_00, 0], [70_00, 0, 30_00])
    assert ledger_harness.ledger.check_invariants() == []


@pytest.mark.parametrize("together", [False, True], ids=["in-turn", "together"])
def test_two_approved_transfers_that_together_overdraw_run_one(ledger_harness: Harness, together: bool) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    payer, first, second = (ledger_harness.open_account(b) for b in ("100", "0", "0"))
    openings = [
        asked(gate, "transfer_funds", {"from_account": payer, "to_account": payee, "amount": "60"})
        for payee in (first, second)
    ]

    results = approved(gate, openings, together)

    assert sorted(r.status.value for r in results) == ["executed", "failed"], results
    [refused] = [r for r in results if r.status is not Status.EXECUTED]
    assert refused.error is not None and refused.error["code"] == "insufficient_funds"
    assert ledger_harness.balance(payer) == 40_00
    assert ledger_harness.balance(first) + ledger_harness.balance(second) == 60_00
    assert ledger_harness.ledger.check_invariants() == []


def test_a_transfer_approved_into_an_account_closed_meanwhile_moves_nothing(ledger_harness: Harness) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    payer, target, keeper = (ledger_harness.open_account(b) for b in ("100", "5", "0"))
    transfer = asked(gate, "transfer_funds", {"from_account": payer, "to_account": target,
                                                                "amount": "30"})  # fmt: skip
    close = asked(gate, "close_account", {"account_id": target, "sweep_to": keeper})

    closed, moved = approved(gate, [close, transfer], together=False)

    assert closed.status is Status.EXECUTED, closed
    assert moved.status is Status.FAILED and moved.error is not None and moved.error["code"] == "account_closed"
    assert target in moved.message and "closed" in moved.message
    assert [ledger_harness.balance(a) for a in (payer, target, keeper)] == [100_00, 0, 5_00]


@pytest.mark.parametrize("change", ["target-closed", "target-currency"])
def test_a_close_whose_sweep_target_changed_before_the_answer_moves_nothing(
    ledger_harness: Harness, change: str
) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    account, keeper, spare = (ledger_harness.open_account(b) for b in ("100", "0", "0"))
    close = asked(gate, "close_account", {"account_id": account, "sweep_to": keeper})
    if change == "target-closed":
        [closed] = approved(gate, [asked(gate, "close_account", {"account_id": keeper})], False)
        assert closed.status is Status.EXECUTED, closed
    else:
        edit = text("UPDATE accounts SET currency = 'EUR' WHERE id = :id")
        ledger_harness.db.run(lambda conn: conn.execute(edit, {"id": keeper}))

    [result] = approved(gate, [close], together=False)

    assert result.status is Status.FAILED and result.error is not None, result
    assert result.error["code"] == ("account_closed" if change == "target-closed" else "currency_mismatch")
    assert keeper in result.message
    assert [ledger_harness.balance(a) for a in (account, keeper, spare)] == [100_00, 0, 0]
    assert ledger_harness.events(close.approval.ref) == ["requested", "approved", "failed"]  # type: ignore[union-attr]


@pytest.mark.parametrize("together", [False, True], ids=["in-turn", "together"])
@pytest.mark.parametrize("sweeps", ["two-targets", "each-into-the-other"])
def test_two_approved_closes_that_meet_sweep_once(ledger_harness: Harness, together: bool, sweeps: str) -> None:
    """Two closes of one account into two targets, or two accounts each closing into the other: one runs, and
    the other, whose account or target it closed (or whose balance it changed), moves nothing."""
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    first, second, third = (ledger_harness.open_account(b) for b in ("100", "40", "0"))
    pairs = [(first, second), (first, third)] if sweeps == "two-targets" else [(first, second), (second, first)]
    openings = [asked(gate, "close_account", {"account_id": a, "sweep_to": to}) for a, to in pairs]

    results = approved(gate, openings, together)

    assert sorted(r.status.value for r in results) == ["executed", "failed"], results
    [refused] = [r for r in results if r.status is not Status.EXECUTED]
    assert refused.error is not None
    assert refused.error["code"] in ("account_closed", "changed_since_approval"), refused
    balances = [ledger_harness.balance(a) for a in (first, second, third)]
    either = ([0, 140_00, 0], [0, 40_00, 100_00]) if sweeps == "two-targets" else ([0, 140_00, 0], [140_00, 0, 0])
    assert balances in either, balances  # whichever settled first swept its account's whole balance
    assert ledger_harness.ledger.check_invariants() == []
