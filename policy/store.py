"""The storage the gate needs, as interfaces: the server implements them on the ledger database
(`mcp_server.storage.gate_store`), `policy.testing` in memory.

Everything one decision writes (approval state, ledger effect, idempotency record, audit
entries) happens through one `GateTx`, i.e. in one database transaction.
"""

import re
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, TypeVar

from policy.canonical import digest
from policy.channel import DEFAULT_CHANNEL, Channel

T = TypeVar("T")

CLOCK_TOLERANCE = 60.0
"""Seconds a server's clock may read before a question was asked and still take its answer: replicas' clocks a
little apart. Further back, the clock was set back since (an NTP step) or runs behind the replica that asked, and
the question's stored deadline read as is would keep it open as much longer as the clock is off
(`Approval.set_back`). Replicas must keep their clocks within this of each other (README)."""
L_co = TypeVar("L_co", covariant=True)


def asked_by(now: float) -> float:
    """The latest time a question may have been asked and not be `Approval.set_back` at `now`: SQL compares
    `created_at` with it (`created_at <= :asked`), so the store's counts and sweep cut off where the gate does."""
    return now + CLOCK_TOLERANCE


@dataclass(frozen=True)
class Approval:
    """A question put to a human, and (once settled) what came of it."""

    ref: str
    binding: str
    """Digest of tool + canonical arguments + principal + policy version + idempotency key."""
    tool: str
    arguments: Mapping[str, Any]
    principal: str
    policy_version: str
    question: str
    created_at: float
    expires_at: float
    status: str = "pending"
    asked_digest: str | None = None
    """The SDK's digest of the question as put to the client: what a 2026-07-28 round answering it names."""
    note: str | None = None
    outcome: Mapping[str, Any] | None = None
    bound: Mapping[str, str] = field(default_factory=dict)
    """The facts beyond the arguments that the question showed and the approval binds (`Inspection.bound`)."""
    channel: Channel = DEFAULT_CHANNEL
    """Where the policy allows it to be given: the desk neither lists nor decides a `form` one."""
    idempotency_key: str | None = None
    """The key of the call that asked it, under which its outcome is stored: also when the server ends it
    (`Gate.expire_overdue`), its caller gone."""

    @property
    def timeout(self) -> float:
        """The approval timeout it was asked under, read off the row (every replica, and a restart with another
        setting, reads the same)."""
        return self.expires_at - self.created_at

    def set_back(self, now: float) -> bool:
        """Whether `now` reads more than `CLOCK_TOLERANCE` before the question was asked: how long it has waited
        cannot be told, so it is over (`over`), whatever its deadline says."""
        return self.created_at > asked_by(now)

    def over(self, now: float) -> bool:
        """Whether it can no longer be answered at `now`: past its deadline, or on a clock `set_back`."""
        return now >= self.expires_at or self.set_back(now)

    def continue_by(self, decided_at: float) -> float:
        """By when its caller must continue it once a desk approver signed a yes at `decided_at`: as long after
        the decision as the question was given to be answered (`timeout`; `SqlGateTx.overdue` computes it
        alike). Past that the yes no longer runs: the approver's intent was for then, not for whenever the
        caller comes back."""
        return decided_at + self.timeout

    @cached_property
    def question_sha256(self) -> str:
        """The digest of the question shown, as its audit records carry it (computed once per approval read)."""
        return digest(self.question)


APPROVAL_REF = re.compile(r"APR-[0-9A-F]{10}")
"""The shape of every approval reference (`Gate._question` makes them)."""
APPROVER_PREFIX = "approver:"
"""How audit records name a desk approver (`approver:erin`); no caller may carry a name that begins so."""


@dataclass(frozen=True)
class DeskSignoff:
    """An approver's signed decision on one approval, as the desk recorded it (protocol-free).

    The gate accepts it only if `binding` and `question_sha256` are the approval's own: the
    desk checked both when the approver signed, the gate checks again because anyone with
    database access could write the row.
    """

    approval_ref: str
    approver: str
    approved: bool
    note: str | None
    decided_at: float
    """When it was signed: an answer counts if it came before the approval's deadline."""
    binding: str
    question_sha256: str
    approver_active: bool
    """Whether the approver is still active on the desk's roster, as the transaction reading it sees it (after
    any revocation that commits before it ends): a yes of a revoked approver runs nothing."""
    approver_is_requester: bool
    """Whether the approver is now linked to the principal that asked (four eyes), read likewise."""

    def void(self, requester: str) -> str | None:
        """Why this yes runs nothing (`void_yes`); None for a no, or a yes its approver may still give."""
        return void_yes(self.approver_active, self.approver_is_requester, requester) if self.approved else None


def void_yes(approver_active: bool, approver_is_requester: bool, requester: str) -> str | None:
    """Why a desk yes no longer runs anything, or None if it still may: the one rule the gate settles by
    (`gate._desk_verdict`) and every page showing a yes waiting for its caller words it by; the expiry sweep finds
    such yeses alike (`SqlGateTx.overdue`). A revocation (or link) takes away the power to say yes to every call not
    yet run; a no stands whoever signed it."""
    if not approver_active:
        return "whose access was revoked before the call was continued"
    if approver_is_requester:
        return f"who acts as the requester {requester} (four eyes: another approver must decide it)"
    return None


@dataclass(frozen=True)
class AuditEntry:
    """One decision or outcome, before the store chains it."""

    at: float
    event: str
    principal: str
    tool: str
    arguments: Mapping[str, Any]
    policy_version: str
    matched_rules: tuple[str, ...] = ()
    reason: str = ""
    approval_ref: str | None = None
    question_sha256: str | None = None
    note: str | None = None
    result: Mapping[str, Any] | None = None
    amount_minor: int = 0
    currency: str | None = None
    """The currency of `amount_minor`, on a record that moved money (a daily total counts its own currency)."""
    idempotency_key: str | None = None
    """The key the call ran under (as scoped to its caller), so a key run twice shows in the records even when
    what the database held to prevent it (its stored outcome, the ledger transaction's key) was edited away."""


class GateTx(Protocol[L_co]):
    """One open database transaction, as the gate sees it, carrying the ledger handle bound to it.

    The gate never looks inside `ledger`: it is what the store's actions write their effect
    through, so an effect commits or rolls back with the approval that allowed it.
    """

    @property
    def ledger(self) -> L_co:
        """The ledger as this transaction sees it (for `Action.inspect` and `Action.execute`)."""

    @property
    def settles(self) -> bool:
        """Whether this transaction may run an effect: then `Action.inspect` reads the rows the effect
        changes under lock, and `Action.execute` writes on those rows without reading them again. A
        transaction that only asks a question reads without locking (a consistent read suffices)."""

    def discard(self) -> None:
        """Roll this transaction back when its work returns, instead of committing it."""

    def recall(self, key: str, request_digest: str) -> Mapping[str, Any] | None:
        """The stored outcome for `key`; raises `Refusal("idempotency_conflict")` on another request.

        In a write transaction it first takes the key's turn (as `take_turn` does a principal's), so the key
        stays unused until this transaction ends unless it stores it.
        """

    def remember(self, key: str, request_digest: str, outcome: Mapping[str, Any]) -> None:
        """Store the outcome of `key`, which this transaction recalled and found unused."""

    def expect_asked(self, asked_digest: str) -> None:
        """Announce `approval_asked(asked_digest)`, to come before anything is written (see `Action.expect`)."""

    def expect_approval(self, ref: str) -> None:
        """Announce `lock_approval(ref)`, and `desk_decision(ref)` after it, to come before anything is written
        (see `Action.expect`)."""

    def expect_pending(self, binding: str) -> None:
        """Announce `create_approval(shared=True)` of an approval bound to `binding`, to come before anything is
        written (see `Action.expect`): the approval pending under it is read ahead."""

    def approval_asked(self, asked_digest: str) -> Approval | None:
        """The approval whose question has this digest, pending or settled; in a write
        transaction, held against concurrent settlement until the transaction ends."""

    def create_approval(self, approval: Approval, *, shared: bool) -> Approval:
        """Insert a pending approval. `shared`: if one is already pending for its binding,
        return that one instead (calls that coalesce); else it is always a new question."""

    def lock_approval(self, ref: str) -> Approval | None:
        """Read an approval and hold it against concurrent settlement until the transaction ends."""

    def settle_approval(self, approval: Approval) -> None:
        """Store the settled approval; only a pending one may be settled (else raise)."""

    def overdue(
        self, now: float, grace: float, limit: int, passed: Collection[str] = (), *, timeout: float
    ) -> list[str]:
        """The references of up to `limit` pending approvals over at `now` for `grace` seconds (`Approval.over`:
        their deadline at or before `now - grace`) or read on a clock set back (`Approval.set_back` at `now`),
        in no promised order (each batch ends whichever are due), leaving out those in `passed` and those a desk
        approver signed a yes on that their callers may still continue (not set back, `Approval.continue_by` after
        `now - grace`); with those whose desk yes is void (`DeskSignoff.void`), due or not, as settling them would
        find them: those signed since `now - grace - timeout` (`timeout`: the approval timeout this gate asks with),
        at once; an older one once its window has passed, as any yes. In a write transaction each is held as
        `lock_approval` holds one, with its idempotency key's turn (as `recall` takes it): one whose row or key
        another transaction holds is left out, not waited for.
        Only references are read: a row edited unreadable is found by `lock_approval`, one at a time."""

    def desk_decision(self, ref: str) -> DeskSignoff | None:
        """The approval desk's signed decision on approval `ref`, if an approver has made one."""

    def take_turn(self, principal: str) -> None:
        """Wait until no other write transaction of `principal` holds its turn, then hold it
        until this one ends: decisions on totals over the principal's calls do not interleave."""

    def expect_waiting(self, principal: str, now: float) -> None:
        """Announce `waiting(principal, now)`, to come with the first read after the principal's turn."""

    def waiting(self, principal: str, now: float) -> int:
        """How many of `principal`'s approvals wait for an answer at `now`: pending, not `Approval.over`."""

    def moved_today_minor(self, principal: str, since: float, currency: str) -> int:
        """Sum of the money `principal` moved in `currency` (transfers and sweeps executed) since the epoch
        time `since`; a record from before amounts stated their currency counts in every currency."""

    def append_audit(self, entry: AuditEntry) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]:
        """Undo the block's writes if it raises (so a refused effect leaves no trace)."""


class GateStore(Protocol[L_co]):
    """Transactions over the gate's storage, and the choice of where blocking store work runs."""

    def transaction(self, work: Callable[[GateTx[L_co]], T], *, write: bool = True, durable: bool = True) -> T:
        """Run `work` in one transaction, retried on serialization failures (so it may run twice).

        An exception from `work` rolls the transaction back, as does `GateTx.discard`.
        `durable=False`: the commit may return before it reaches the disk (it survives the
        process, not the machine); for transactions that record no outcome anyone is told about.
        """

    async def run(self, work: Callable[[], T]) -> T:
        """Run blocking `work` (which opens transactions on this store) from async code.

        The store decides where: on the event loop or in a worker thread, whether to wait for
        other writers, and how long to wait at most (past that it raises
        `Refusal("database_unavailable")`; what `work` did is then unknown).
        """
