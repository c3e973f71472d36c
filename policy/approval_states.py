"""The life of an approval, in one table: which state it may go to from which.

    pending ──approve──▶ approved ──▶ executed | failed | denied
       │
       └──▶ rejected | cancelled | expired | denied (undelivered, no human; a void desk yes) | failed (key conflict)

`approved` is a moment inside the settling transaction (the answer was a clean yes and the
call is being re-decided and run); what is stored is where it ends. Every settled state is
final: an approval is used at most once. The store refuses to settle into anything the
table does not reach from `pending`.
"""

from enum import StrEnum

from policy.results import Status
from policy.verdict import VerdictKind


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXECUTED = Status.EXECUTED.value
    FAILED = Status.FAILED.value
    DENIED = Status.DENIED.value
    REJECTED = Status.REJECTED.value
    CANCELLED = Status.CANCELLED.value
    EXPIRED = Status.EXPIRED.value


TRANSITIONS: dict[ApprovalState, frozenset[ApprovalState]] = {
    ApprovalState.PENDING: frozenset(
        {
            ApprovalState.APPROVED,
            ApprovalState.REJECTED,
            ApprovalState.CANCELLED,
            ApprovalState.EXPIRED,
            ApprovalState.DENIED,
            ApprovalState.FAILED,
        }
    ),
    ApprovalState.APPROVED: frozenset({ApprovalState.EXECUTED, ApprovalState.FAILED, ApprovalState.DENIED}),
}
"""From each state, the states it may go to; a state with no entry is final."""

ANSWERED: dict[VerdictKind, ApprovalState] = {
    VerdictKind.APPROVE: ApprovalState.APPROVED,
    VerdictKind.REJECT: ApprovalState.REJECTED,
    VerdictKind.CANCEL: ApprovalState.CANCELLED,
    VerdictKind.EXPIRE: ApprovalState.EXPIRED,
    VerdictKind.UNDELIVERED: ApprovalState.DENIED,
    VerdictKind.VOID: ApprovalState.DENIED,
}
"""Where a human's verdict (or its absence) moves a pending approval."""


def is_final(state: ApprovalState) -> bool:
    return state not in TRANSITIONS


def settled_states() -> frozenset[ApprovalState]:
    """Every final state reachable from `pending`: what a settled approval may be stored as."""
    reached: set[ApprovalState] = set()
    frontier = [ApprovalState.PENDING]
    while frontier:
        for state in TRANSITIONS.get(frontier.pop(), frozenset()):
            if state not in reached:
                reached.add(state)
                frontier.append(state)
    return frozenset(s for s in reached if is_final(s))


SETTLED = settled_states()


def check_settlement(status: str) -> ApprovalState:
    """The final state a pending approval settles into; raises `ValueError` for anything else."""
    try:
        state = ApprovalState(status)
    except ValueError:
        raise ValueError(f"'{status}' is not an approval state") from None
    if state not in SETTLED:
        raise ValueError(f"a pending approval cannot settle as '{status}' (it may end as {', '.join(sorted(SETTLED))})")
    return state


def ending(verdict: VerdictKind, executed: Status | None = None) -> ApprovalState:
    """Where `verdict` leaves a pending approval; for a yes, `executed` says how running it ended."""
    state = ANSWERED[verdict]
    if state is ApprovalState.APPROVED:
        if executed is None:
            raise ValueError("an approved call ends where running it ended: pass its status")
        state = ApprovalState(executed.value)
        if state not in TRANSITIONS[ApprovalState.APPROVED]:
            raise ValueError(f"an approved call cannot end as '{executed.value}'")
    return state
