"""The approval state table: every walk from `pending` ends in a final state a result can have."""

import pytest

from policy.approval_states import (
    ANSWERED,
    SETTLED,
    TRANSITIONS,
    ApprovalState,
    check_settlement,
    ending,
    is_final,
)
from policy.results import Status
from policy.verdict import VerdictKind


def walks(state: ApprovalState = ApprovalState.PENDING) -> list[tuple[ApprovalState, ...]]:
    """Every path through the table from `state` to a final state."""
    if is_final(state):
        return [(state,)]
    return [(state, *rest) for nxt in sorted(TRANSITIONS[state]) for rest in walks(nxt)]


def test_every_walk_from_pending_ends_in_a_result_status_and_never_returns() -> None:
    paths = walks()

    endings = {ApprovalState(s.value) for s in Status if s is not Status.PENDING_APPROVAL}  # an answer, not an end
    assert {path[-1] for path in paths} == endings == SETTLED
    for path in paths:
        assert len(set(path)) == len(path), f"a walk revisits a state: {path}"
        assert ApprovalState.PENDING not in path[1:]
    assert (ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.EXECUTED) in paths
    assert (ApprovalState.PENDING, ApprovalState.EXECUTED) not in paths  # nothing runs unapproved


def test_every_verdict_moves_a_pending_approval() -> None:
    assert set(ANSWERED) == set(VerdictKind)
    assert all(state in TRANSITIONS[ApprovalState.PENDING] for state in ANSWERED.values())


@pytest.mark.parametrize(
    ("verdict", "executed", "state"),
    [
        (VerdictKind.APPROVE, Status.EXECUTED, ApprovalState.EXECUTED),
        (VerdictKind.APPROVE, Status.FAILED, ApprovalState.FAILED),
        (VerdictKind.APPROVE, Status.DENIED, ApprovalState.DENIED),
        (VerdictKind.REJECT, None, ApprovalState.REJECTED),
        (VerdictKind.CANCEL, None, ApprovalState.CANCELLED),
        (VerdictKind.EXPIRE, None, ApprovalState.EXPIRED),
        (VerdictKind.UNDELIVERED, None, ApprovalState.DENIED),
    ],
)
def test_where_a_verdict_ends(verdict: VerdictKind, executed: Status | None, state: ApprovalState) -> None:
    assert ending(verdict, executed) is state


def test_an_approved_call_cannot_end_as_a_human_answer() -> None:
    with pytest.raises(ValueError, match="cannot end as 'rejected'"):
        ending(VerdictKind.APPROVE, Status.REJECTED)
    with pytest.raises(ValueError, match="pass its status"):
        ending(VerdictKind.APPROVE)


@pytest.mark.parametrize("status", ["pending", "approved", "settled", ""])
def test_a_settlement_must_name_a_final_state(status: str) -> None:
    with pytest.raises(ValueError, match=repr(status)):
        check_settlement(status)


def test_a_settlement_into_a_final_state_is_accepted() -> None:
    assert {check_settlement(s.value) for s in Status if s is not Status.PENDING_APPROVAL} == SETTLED
