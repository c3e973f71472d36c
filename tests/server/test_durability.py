"""Which gate transactions may commit before they reach the disk: only those that open a question.

Every outcome somebody is told about (executed, denied, failed, a settled approval) is
committed durably. A new call of a tool that asks by default starts without durability; if
it turns out to settle something after all, that attempt is rolled back (leaving no trace)
and the call is decided again durably.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import SqlGateStore, SqlGateTx
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate
from policy.loader import load_policy
from policy.results import Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import TEST_POLICY, Harness

T = TypeVar("T")


class RecordingStore(SqlGateStore):
    """The ledger's gate store, noting each write transaction: (durable, committed)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.writes: list[tuple[bool, bool]] = []

    def transaction(self, work: Callable[[SqlGateTx], T], *, write: bool = True, durable: bool = True) -> T:
        if not write:
            return super().transaction(work, write=False)
        kept: list[bool] = []

        def noted(tx: SqlGateTx) -> T:
            result = work(tx)
            kept.append(not tx.discarded)
            return result

        try:
            result = super().transaction(noted, durable=durable)
        except BaseException:
            self.writes.append((durable, False))
            raise
        self.writes.append((durable, kept[-1]))
        return result


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")


def gate_on(harness: Harness) -> tuple[Gate, RecordingStore]:
    store = RecordingStore(harness.db)
    policy = load_policy(TEST_POLICY)
    return Gate(policy, store, ledger_actions(harness.ledger, policy)), store


def transfer(harness: Harness, gate: Gate, amount: str, funds: str = "100") -> Call:
    args: dict[str, Any] = {
        "from_account": harness.open_account(funds),
        "to_account": harness.open_account("0"),
        "amount": amount,
    }
    return Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")


def test_a_new_question_is_committed_without_waiting_for_the_disk(harness: Harness) -> None:
    gate, store = gate_on(harness)
    call = transfer(harness, gate, "25")

    opening = gate.open(call, human_reachable=True)

    assert opening.approval is not None and opening.final is None
    assert store.writes == [(False, True)]
    assert harness.events(opening.approval.ref) == ["requested"]


@pytest.mark.parametrize(
    ("amount", "funds", "status"),
    [("0.50", "100", Status.EXECUTED), ("60000", "70000", Status.DENIED), ("150", "100", Status.FAILED)],
    ids=["allowed-by-a-rule", "denied-by-a-rule", "refused-by-the-ledger"],
)
def test_an_outcome_reached_without_asking_is_redone_durably(
    harness: Harness, amount: str, funds: str, status: Status
) -> None:
    gate, store = gate_on(harness)
    call = transfer(harness, gate, amount, funds)
    audit_before = len(harness.audit())

    opening = gate.open(call, human_reachable=True)

    assert opening.final is not None and opening.final.status is status
    assert store.writes == [(False, False), (True, True)]  # the relaxed attempt rolled back
    records = harness.audit()[audit_before:]
    assert [r["event"] for r in records] == [status.value]  # one record: the rolled-back attempt left none
    moved = 50 if status is Status.EXECUTED else 0
    assert harness.balance(call.arguments["to_account"]) == moved


def test_settling_an_answer_is_durable(harness: Harness) -> None:
    gate, store = gate_on(harness)
    call = transfer(harness, gate, "25")
    opening = gate.open(call, human_reachable=True)

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.EXECUTED
    assert store.writes == [(False, True), (True, True)]
    assert harness.balance(call.arguments["to_account"]) == 2500


def test_a_client_that_cannot_be_asked_is_refused_durably(harness: Harness) -> None:
    gate, store = gate_on(harness)
    call = transfer(harness, gate, "25")

    opening = gate.open(call, human_reachable=False)

    assert opening.final is not None and opening.final.status is Status.DENIED
    assert store.writes == [(True, True)]
