"""The ledger's own reads of open questions after a clock step back agree with `Approval.over`.

A question asked while a clock read an hour ahead (or on a replica an hour ahead) is over once the clock is set
back (`Approval.set_back`): the gate refuses its answer. The store still counted it open by its stored deadline:
it held one of its principal's `max_pending_approvals` places for the timeout plus the hour, and the expiry sweep
left it pending as long. Both now use the same cut-off (`policy.store.asked_by`), on SQLite and PostgreSQL.
"""

import time

from mcp_server.app import AppState, open_state
from policy.action import Call
from policy.results import Refusal
from policy.store import CLOCK_TOLERANCE
from tests.server.harness import Harness
from tests.server.test_expiry_sweep import TOOL, status, transfer

HOUR = 3600.0
CAP = 2


def capped(ledger: Harness) -> AppState:
    state = open_state(ledger.settings())
    state.gate.max_pending = CAP
    return state


def ask(state: AppState, ledger: Harness) -> str:
    """A transfer question asked through the gate: its reference, or the code it was refused with."""
    gate = state.gate
    call = Call(TOOL, gate.actions[TOOL].canonical(transfer(ledger)), "local")
    try:
        opening = gate.open(call, human_reachable=True)
    except Refusal as refusal:
        return refusal.code
    assert opening.approval is not None, opening.final
    return opening.approval.ref


def test_questions_asked_before_a_clock_step_back_free_their_places(ledger_harness: Harness) -> None:
    state = capped(ledger_harness)
    state.gate.clock = lambda: time.time() + HOUR  # asked on a clock an hour ahead
    for _ in range(CAP):
        assert ask(state, ledger_harness).startswith("APR-")
    assert ask(state, ledger_harness) == "too_many_pending"
    state.gate.clock = time.time  # NTP set it back: those questions are over

    assert ask(state, ledger_harness).startswith("APR-"), "refused for questions that are over"


def test_questions_asked_on_a_clock_a_little_ahead_keep_their_places(ledger_harness: Harness) -> None:
    state = capped(ledger_harness)
    state.gate.clock = lambda: time.time() + CLOCK_TOLERANCE - 5  # a replica within the tolerance
    for _ in range(CAP):
        assert ask(state, ledger_harness).startswith("APR-")
    state.gate.clock = time.time

    assert ask(state, ledger_harness) == "too_many_pending"


def test_the_sweep_ends_a_question_asked_before_a_clock_step_back(ledger_harness: Harness) -> None:
    state = open_state(ledger_harness.settings())
    state.gate.clock = lambda: time.time() + HOUR
    ref = ask(state, ledger_harness)
    state.gate.clock = time.time

    assert state.expiry.sweep() == 1

    assert status(ledger_harness, ref) == "expired"
    [ended] = ledger_harness.audit(approval_ref=ref, event="expired")
    assert "clock" in ended["reason"], ended


def test_the_sweep_on_a_clock_a_little_behind_ends_nothing(ledger_harness: Harness) -> None:
    state = open_state(ledger_harness.settings())
    ref = ask(state, ledger_harness)
    state.gate.clock = lambda: time.time() - CLOCK_TOLERANCE + 5

    assert state.expiry.sweep() == 0
    assert status(ledger_harness, ref) == "pending"
