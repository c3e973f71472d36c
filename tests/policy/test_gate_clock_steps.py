"""A question lives its timeout, not as long as a clock was off (an NTP step back, a replica running behind).

A deadline is stored as wall-clock time (`Approval.expires_at`) and judged by the clock of whichever server
reads it. A clock set back by an hour after a question was asked (or a replica an hour behind the one that
asked) read that deadline as an hour further away: the five-minute question took a yes an hour later and the
transfer ran. A clock reading more than `CLOCK_TOLERANCE` before the question was asked cannot tell how much
time is left, so the question is over, `expired`, saying why; within the tolerance (replicas a few seconds
apart) it is answered as usual.
"""

import pytest

from mcp_server.expiry import EXPIRY_GRACE
from policy.results import Status
from policy.store import CLOCK_TOLERANCE
from policy.verdict import Verdict, VerdictKind
from tests.policy.bank import TTL, bank, transfer
from tests.policy.test_gate_channels import asked_at_desk

HOUR = 3600.0


def test_a_yes_after_the_clock_was_set_back_an_hour_runs_nothing() -> None:
    gate, store, clock = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    assert opening.approval is not None
    clock.now += TTL + 1 - HOUR  # past the deadline in real time, the clock an hour back

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.EXPIRED and store.ledger.balances["B"] == 0
    assert "clock" in result.message, result.message


def test_a_desk_yes_after_the_clock_was_set_back_an_hour_runs_nothing() -> None:
    gate, store, clock, ref = asked_at_desk()
    clock.now += TTL + 1 - HOUR
    store.sign_at_desk(ref, "dora", approved=True, at=clock.now)

    done = gate.resume(transfer(12_000), ref).final

    assert done is not None and done.status is Status.EXPIRED and store.ledger.balances["B"] == 0
    assert store.approvals[ref].status == "expired"


def test_a_desk_link_continued_after_the_clock_was_set_back_is_over() -> None:
    gate, _, clock, ref = asked_at_desk()
    clock.now -= HOUR

    done = gate.resume(transfer(12_000), ref).final

    assert done is not None and done.status is Status.EXPIRED and "clock" in done.message, done


@pytest.mark.parametrize("behind", [1.0, CLOCK_TOLERANCE - 1], ids=["a-second", "within-tolerance"])
def test_an_answer_on_a_clock_a_little_behind_the_askers_is_taken(behind: float) -> None:
    gate, store, clock = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    clock.now -= behind  # another replica, its clock within the tolerance

    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is Status.EXECUTED and store.ledger.balances["B"] == 12_000


def test_a_sweep_on_a_clock_ahead_within_the_tolerance_ends_nothing_before_its_deadline() -> None:
    """The other side of the bound: the sweep's grace covers a replica whose clock runs the tolerance ahead."""
    gate, store, clock = bank()
    opening = gate.open(transfer(12_000), human_reachable=True)
    assert opening.approval is not None
    clock.now += TTL - 1 + CLOCK_TOLERANCE  # a second before the deadline, swept on a clock the tolerance ahead

    assert gate.expire_overdue(EXPIRY_GRACE, 10).ended == 0
    assert store.approvals[opening.approval.ref].status == "pending"


def test_a_question_asked_before_a_clock_step_back_frees_its_place_and_is_swept() -> None:
    """The in-memory store reads open questions as the ledger's does (`tests/server/test_store_clock_steps.py`)."""
    gate, store, clock = bank()
    gate.max_pending = 1
    opening = gate.open(transfer(12_000), human_reachable=True)
    assert opening.approval is not None
    clock.now -= HOUR

    assert gate.open(transfer(13_000), human_reachable=True).approval is not None  # not `too_many_pending`
    assert gate.expire_overdue(EXPIRY_GRACE, 10).ended == 1
    assert store.approvals[opening.approval.ref].status == "expired"
