"""A `GateStore` in memory, faithful where the gate relies on its store.

Approvals settle once (a settled one refuses a second settlement), a transaction that raises
(or is discarded) undoes everything it wrote, an idempotency key bound to another request is
a conflict, and turns and approval locks are real locks held until the transaction ends, so
threads calling the gate concurrently interleave as they would on the database. Audit
entries become visible when their transaction commits, as on the database. The ledger
handle (`MemoryTx.ledger`) is a table of balances whose writes roll back with the
transaction.
"""

import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import anyio

from policy.approval_states import ApprovalState, check_settlement
from policy.canonical import digest
from policy.results import Refusal
from policy.store import Approval, AuditEntry, DeskSignoff

T = TypeVar("T")

IDEMPOTENCY_CONFLICT = "idempotency_conflict"


class MemoryLedger:
    """Balances in minor units by account id; read and written through a transaction's `ledger`."""

    def __init__(self, balances: Mapping[str, int] | None = None) -> None:
        self.balances = dict(balances or {})


class LedgerView:
    """The ledger as one transaction sees it: every write is undone if the transaction is."""

    def __init__(self, tx: "MemoryTx") -> None:
        self._tx = tx

    def balance(self, account: str) -> int:
        """The account's balance; raises `Refusal("unknown_account")` if there is no such account."""
        balances = self._tx.store.ledger.balances
        if account not in balances:
            raise Refusal("unknown_account", f"There is no account {account}.", "account")
        return balances[account]

    def set_balance(self, account: str, minor: int) -> None:
        balances = self._tx.store.ledger.balances
        before = balances.get(account)
        balances[account] = minor
        self._tx.undo(lambda: _restore(balances, account, before))


class MemoryGateStore:
    def __init__(self, ledger: MemoryLedger | None = None) -> None:
        self.ledger = ledger or MemoryLedger()
        self.approvals: dict[str, Approval] = {}
        self.keys: dict[str, tuple[str, Mapping[str, Any]]] = {}
        """Idempotency key -> (request digest, stored outcome)."""
        self.shared: set[str] = set()
        """References of approvals that calls under one idempotency key share (see `create_approval`)."""
        self.audit: list[AuditEntry] = []
        self.desk: dict[str, DeskSignoff] = {}
        """Signed desk decisions by approval reference (recorded once, as `desk_decisions` is)."""
        self.writes: list[tuple[bool, bool]] = []
        """Each write transaction as (durable, committed), in the order they ended."""
        self._mutex = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def transaction(self, work: Callable[["MemoryTx"], T], *, write: bool = True, durable: bool = True) -> T:
        tx = MemoryTx(self, write)
        try:
            result = work(tx)
        except BaseException:
            tx.end(commit=False)
            if write:
                self.writes.append((durable, False))
            raise
        tx.end(commit=not tx.discarded)
        if write:
            self.writes.append((durable, not tx.discarded))
        return result

    async def run(self, work: Callable[[], T]) -> T:
        """In a worker thread: a memory transaction may wait on another's locks, never on the loop."""
        return await anyio.to_thread.run_sync(work)

    def lock(self, name: str) -> threading.Lock:
        with self._mutex:
            return self._locks.setdefault(name, threading.Lock())

    def sign_at_desk(
        self, ref: str, approver: str, *, approved: bool, at: float, note: str | None = None
    ) -> DeskSignoff:
        """Record an approver's decision on pending approval `ref` as the desk would: over the approval
        as stored, once."""
        approval = self.approvals[ref]
        assert ref not in self.desk, "the desk records one decision per approval"
        signoff = DeskSignoff(
            ref, approver, approved, note, at, approval.binding, digest(approval.question), True, False
        )
        self.desk[ref] = signoff
        return signoff

    def events(self, ref: str) -> list[str]:
        """The audit events of one approval, in order."""
        return [entry.event for entry in self.audit if entry.approval_ref == ref]


class MemoryTx:
    """One open transaction of a `MemoryGateStore` (a `GateTx[LedgerView]`)."""

    def __init__(self, store: MemoryGateStore, write: bool) -> None:
        self.store = store
        self.write = write
        self.discarded = False
        self._undo: list[Callable[[], object]] = []
        self._held: list[threading.Lock] = []
        self._held_names: set[str] = set()
        self._audit: list[AuditEntry] = []

    @property
    def ledger(self) -> LedgerView:
        return LedgerView(self)

    @property
    def settles(self) -> bool:
        return self.write

    def discard(self) -> None:
        self.discarded = True

    def undo(self, step: Callable[[], object]) -> None:
        """Remember how to take back one write, should the transaction not commit."""
        self._undo.append(step)

    def end(self, *, commit: bool) -> None:
        if commit:
            self.store.audit.extend(self._audit)
        else:
            for step in reversed(self._undo):
                step()
        for lock in reversed(self._held):
            lock.release()

    def recall(self, key: str, request_digest: str) -> Mapping[str, Any] | None:
        if self.write:
            self._hold(f"key:{key}")
        stored = self.store.keys.get(key)
        if stored is None:
            return None
        digest, outcome = stored
        if digest != request_digest:
            raise Refusal(
                IDEMPOTENCY_CONFLICT,
                "This idempotency key was already used for a different request; use a new key.",
                "idempotency_key",
            )
        return outcome

    def remember(self, key: str, request_digest: str, outcome: Mapping[str, Any]) -> None:
        self._writing()
        assert key not in self.store.keys, "a key is stored once"
        self.store.keys[key] = (request_digest, dict(outcome))
        self.undo(lambda: self.store.keys.pop(key))

    def expect_asked(self, asked_digest: str) -> None:
        """Nothing to send ahead: every read here is already in memory."""

    def expect_approval(self, ref: str) -> None:
        """Nothing to send ahead: every read here is already in memory."""

    def expect_pending(self, binding: str) -> None:
        """Nothing to send ahead: every read here is already in memory."""

    def approval_asked(self, asked_digest: str) -> Approval | None:
        found = next((a for a in self.store.approvals.values() if a.asked_digest == asked_digest), None)
        if found is not None and self.write:
            return self.lock_approval(found.ref)
        return found

    def create_approval(self, approval: Approval, *, shared: bool) -> Approval:
        self._writing()
        if shared:
            self._hold(f"binding:{approval.binding}")  # as the unique index on pending bindings does
            pending = self._pending(approval.binding)
            if pending is not None:
                return pending
            self.store.shared.add(approval.ref)
            self.undo(lambda: self.store.shared.discard(approval.ref))
        self.store.approvals[approval.ref] = approval
        self.undo(lambda: self.store.approvals.pop(approval.ref))
        self._hold(f"approval:{approval.ref}")
        return approval

    def lock_approval(self, ref: str) -> Approval | None:
        if self.write:
            self._hold(f"approval:{ref}")
        return self.store.approvals.get(ref)

    def settle_approval(self, approval: Approval) -> None:
        self._writing()
        check_settlement(approval.status)
        stored = self.store.approvals.get(approval.ref)
        if stored is None or stored.status != ApprovalState.PENDING:
            raise RuntimeError(f"approval {approval.ref} was already settled")
        self.store.approvals[approval.ref] = replace(
            stored, status=approval.status, note=approval.note, outcome=approval.outcome
        )
        self.undo(lambda: self.store.approvals.__setitem__(approval.ref, stored))

    def overdue(
        self, now: float, grace: float, limit: int, passed: Collection[str] = (), *, timeout: float
    ) -> list[str]:
        approvals, deadline = self.store.approvals, now - grace
        yes = {ref: s for ref, s in self.store.desk.items() if s.approved and ref in approvals}
        void = {
            ref
            for ref, signoff in yes.items()
            if signoff.void(approvals[ref].principal) and signoff.decided_at > deadline - timeout
        }
        signed_yes = {
            ref
            for ref, signoff in yes.items()
            if not approvals[ref].set_back(now) and approvals[ref].continue_by(signoff.decided_at) > deadline
        } - void
        due = sorted(
            (
                a
                for a in self.store.approvals.values()
                if a.status == ApprovalState.PENDING and (a.expires_at <= deadline or a.set_back(now) or a.ref in void)
            ),
            key=lambda a: (a.expires_at, a.ref),
        )
        found: list[str] = []
        for approval in (a for a in due if a.ref not in signed_yes and a.ref not in passed):
            if len(found) == limit:
                break
            # As SKIP LOCKED and a try of the key's turn: what another transaction holds is left out.
            key = approval.idempotency_key
            if not self.write or (
                self._hold(f"approval:{approval.ref}", wait=False)
                and (key is None or self._hold(f"key:{key}", wait=False))
            ):
                found.append(approval.ref)
        return found

    def desk_decision(self, ref: str) -> DeskSignoff | None:
        return self.store.desk.get(ref)

    def take_turn(self, principal: str) -> None:
        if self.write:
            self._hold(f"principal:{principal}")

    def expect_waiting(self, principal: str, now: float) -> None:
        """Nothing to send ahead: every read here is already in memory."""

    def waiting(self, principal: str, now: float) -> int:
        return sum(
            a.principal == principal and a.status == ApprovalState.PENDING and not a.over(now)
            for a in self.store.approvals.values()
        )

    def moved_today_minor(self, principal: str, since: float, currency: str) -> int:
        return sum(
            e.amount_minor
            for e in self.store.audit
            if e.principal == principal and e.at >= since and e.currency in (currency, None)
        )

    def append_audit(self, entry: AuditEntry) -> None:
        self._audit.append(entry)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        mark, audit_mark = len(self._undo), len(self._audit)
        try:
            yield
        except BaseException:
            while len(self._undo) > mark:
                self._undo.pop()()
            del self._audit[audit_mark:]
            raise

    def _pending(self, binding: str) -> Approval | None:
        return next(
            (
                a
                for a in self.store.approvals.values()
                if a.binding == binding and a.status == ApprovalState.PENDING and a.ref in self.store.shared
            ),
            None,
        )

    def _hold(self, name: str, *, wait: bool = True) -> bool:
        """Hold `name` until the transaction ends; `wait=False`: False at once if another transaction holds it."""
        if name in self._held_names:
            return True
        lock = self.store.lock(name)
        if not lock.acquire(blocking=wait):
            return False
        self._held.append(lock)
        self._held_names.add(name)
        return True

    def _writing(self) -> None:
        if not self.write:
            raise RuntimeError("a read transaction writes nothing")


def _restore(balances: dict[str, int], account: str, before: int | None) -> None:
    if before is None:
        balances.pop(account, None)
    else:
        balances[account] = before
