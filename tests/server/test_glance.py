"""`Gate.glance`: an answering round finds its question in a read transaction.

It gives the question `open` would give, and steps aside (`None`) whenever `open` would
write: an expired question, a client that cannot be asked, a round with no question
pending. It does not re-check the call: a call that can no longer run is settled by the
answer's own transaction, which inspects and decides again under lock.
"""

from pathlib import Path

import pytest

from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate, Opening
from policy.loader import load_policy
from policy.results import Refusal, Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import TEST_POLICY, Clock, ledger_transfer

TTL = 60.0


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")


def gate_on(harness: Harness, clock: Clock) -> Gate:
    policy = load_policy(TEST_POLICY)
    return Gate(policy, SqlGateStore(harness.db), ledger_actions(harness.ledger, policy), approval_ttl=TTL, clock=clock)


def asked(harness: Harness, gate: Gate, amount: str = "25") -> tuple[Call, Opening]:
    args = {"from_account": harness.open_account("100"), "to_account": harness.open_account("0"), "amount": amount}
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None
    return call, opening


def answering(opening: Opening) -> str:
    """What a round answering `opening`'s question names: the question's digest."""
    assert opening.approval is not None and opening.approval.asked_digest is not None
    return opening.approval.asked_digest


def rows(harness: Harness) -> tuple[int, int]:
    return len(harness.audit()), harness.db.read(
        lambda c: c.exec_driver_sql("SELECT count(*) FROM approvals WHERE status = 'pending'").scalar_one()
    )


def test_the_answering_round_sees_what_open_would_and_writes_nothing(harness: Harness) -> None:
    gate = gate_on(harness, Clock())
    call, first = asked(harness, gate)
    before = rows(harness)

    seen = gate.glance(call, human_reachable=True, asked=answering(first))
    opened = gate.open(call, human_reachable=True, asked=answering(first), glance=False)

    assert seen is not None and seen == opened
    assert seen.approval == first.approval and seen.confirm == first.confirm
    assert rows(harness) == before


def test_nothing_to_answer_or_nobody_to_ask_is_left_to_open(harness: Harness) -> None:
    gate = gate_on(harness, Clock())
    call, first = asked(harness, gate)
    other = Call(call.tool, {**call.arguments, "amount": "26"}, call.principal)

    assert gate.glance(other, human_reachable=True, asked=answering(first)) is None
    assert gate.glance(call, human_reachable=False, asked=answering(first)) is None


def test_an_expired_round_is_left_to_open_which_settles_it(harness: Harness) -> None:
    clock = Clock()
    gate = gate_on(harness, clock)
    call, first = asked(harness, gate)
    clock.now += TTL

    assert gate.glance(call, human_reachable=True, asked=answering(first)) is None
    settled = gate.open(call, human_reachable=True, asked=answering(first), glance=False)
    assert settled.final is not None and settled.final.status is Status.EXPIRED
    assert first.approval is not None and harness.events(first.approval.ref) == ["requested", "expired"]


@pytest.mark.parametrize(
    ("verdict", "status", "events"),
    [
        (VerdictKind.APPROVE, Status.FAILED, ["requested", "approved", "failed"]),
        (VerdictKind.REJECT, Status.REJECTED, ["requested", "rejected"]),
    ],
)
def test_an_answer_for_a_call_that_can_no_longer_run_is_settled_by_the_answer(
    harness: Harness, verdict: VerdictKind, status: Status, events: list[str]
) -> None:
    gate = gate_on(harness, Clock())
    call, first = asked(harness, gate)
    drained = harness.open_account("0")
    ledger_transfer(harness.ledger, call.arguments["from_account"], drained, "100")  # drained meanwhile

    seen = gate.glance(call, human_reachable=True, asked=answering(first))
    assert seen is not None and seen.approval == first.approval
    result = gate.conclude(seen, Verdict(verdict))

    assert result.status is status
    assert first.approval is not None and harness.events(first.approval.ref) == events
    assert gate.glance(call, human_reachable=True, asked=answering(first)) == Opening(call, final=result)


def test_a_settled_round_is_replayed_from_a_glance(harness: Harness) -> None:
    gate = gate_on(harness, Clock())
    call, first = asked(harness, gate)
    executed = gate.conclude(first, Verdict(VerdictKind.APPROVE))

    replay = gate.glance(call, human_reachable=True, asked=answering(first))

    assert executed.status is Status.EXECUTED
    assert replay is not None and replay.final == executed
    assert harness.balance(call.arguments["to_account"]) == 2500


@pytest.mark.parametrize("column", ["question", "asked_digest"])
def test_a_question_edited_between_the_glance_and_the_answer_settles_nothing(harness: Harness, column: str) -> None:
    """The answer was given to the question the round found; if the stored one has changed since (the
    database edited behind the server's back), the settlement refuses and changes nothing."""
    gate = gate_on(harness, Clock())
    call, first = asked(harness, gate)
    seen = gate.glance(call, human_reachable=True, asked=answering(first))
    assert seen is not None and seen.approval is not None
    ref = seen.approval.ref
    edit = f"UPDATE approvals SET {column} = {column} || ' (edited)' WHERE ref = ?"
    harness.db.run(lambda c: c.exec_driver_sql(edit, (ref,)))
    before = rows(harness)

    with pytest.raises(Refusal, match="no longer holds the question") as refused:
        gate.conclude(seen, Verdict(VerdictKind.APPROVE))

    assert refused.value.code == "approval_mismatch"
    assert rows(harness) == before and harness.events(ref) == ["requested"]
    assert harness.balance(call.arguments["to_account"]) == 0
