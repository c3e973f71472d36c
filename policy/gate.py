"""The gate: decide a call, ask a human when the policy says so, and settle it exactly once.

Invariants held here (each settled inside one store transaction with the effect):
- nothing runs unapproved: `execute` is reached only from an allow decision, or from a
  pending approval whose answer was a clean yes, re-decided under the same policy version;
- an approval is used at most once: settling requires it to be pending, under a lock;
- what runs is what was shown: the approval is bound to the call's digest and to the facts
  its inspection declares (`Inspection.bound`, compared again under lock before anything
  runs), and the question is rendered once from server state and stored;
- a replayed round or a retried idempotency key returns the stored outcome and runs nothing:
  every call ends in `_end`, which settles its approval (found again by any round answering
  it), stores the outcome under its key, and audits it;
- two calls are two requests: only the same idempotency key shares a question, and a round
  answers the one approval whose question it was shown (`Approval.asked_digest`);
- decisions on totals over a principal's calls (`facts.AGGREGATES`) are taken in that
  principal's turn, as is every call that could change them, so concurrent calls cannot
  together pass a limit;
- an outcome is on disk before it is returned; only a transaction that merely creates the
  pending approval for a new question commits without waiting for the disk, since losing it
  (to a power cut) leaves an answer with no question, which is asked again.
"""

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from policy.action import Action, Call, Done, Inspection
from policy.answer import EXPIRED, Verdict, VerdictKind
from policy.asked import question_digest
from policy.canonical import digest
from policy.decision import Decision
from policy.document import Policy
from policy.facts import AGGREGATES, CallFacts
from policy.messages import worded
from policy.outcome import Outcome
from policy.question import render_question
from policy.results import GateResult, Refusal, Status, decision_message
from policy.store import Approval, AuditEntry, GateStore, GateTx

NO_HUMAN = "No human can be asked to approve it from this client, so nothing was done."


@dataclass(frozen=True)
class Opening:
    """The first half of a gated call: either its final result, or the approval to ask about."""

    call: Call
    final: GateResult | None = None
    approval: Approval | None = None
    confirm: str | None = None
    """The argument the approver must type back, if the policy asks for one."""

    @property
    def confirmation(self) -> str | None:
        """What the approver must type back, if anything."""
        return None if self.confirm is None else str(self.call.arguments[self.confirm])


class Gate:
    def __init__(
        self,
        policy: Policy,
        store: GateStore,
        actions: Mapping[str, Action],
        *,
        approval_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.store = store
        self.actions = dict(actions)
        self.approval_ttl = approval_ttl
        self.clock = clock
        self._in_turn = any(AGGREGATES & policy.variables(tool) for tool in self.actions)
        """Whether calls that may change money take the principal's turn: some rule reads a total."""

    def open(
        self,
        call: Call,
        *,
        human_reachable: bool,
        asked: str | None = None,
        glance: bool = True,
        wait: bool = True,
    ) -> Opening:
        """Decide `call`; run it now if allowed, else return the approval to ask about.

        `asked`: the digest of the question a 2026-07-28 round answers (from its sealed state),
        which names the approval it answers; `None` for a new call.
        First tries `glance` (unless told not to); whatever must write is decided again in a
        write transaction.
        A new call of a tool that asks by default is expected to end in a question, so its
        transaction starts without durability; if it settles anything after all, it is rolled
        back and done again durably. `wait=False`: raise `StoreBusy` rather than wait for
        another writer.
        """
        if glance and self.may_glance(call.tool, asked):
            seen = self.glance(call, human_reachable=human_reachable, asked=asked)
            if seen is not None:
                return seen
        action = self.actions[call.tool]
        if asked is None and human_reachable and self.policy.asks_by_default(call.tool):
            try:
                return self.store.transaction(
                    lambda tx: self._open(tx, action, call, human_reachable, asked, only_asking=True),
                    wait=wait,
                    durable=False,
                )
            except _Settles:
                pass
        return self.store.transaction(lambda tx: self._open(tx, action, call, human_reachable, asked), wait=wait)

    def may_glance(self, tool: str, asked: str | None) -> bool:
        """Whether `glance` can answer this call: a read-only tool, or a round bringing an answer."""
        action = self.actions.get(tool)
        return action is not None and (action.read_only or asked is not None)

    def glance(self, call: Call, *, human_reachable: bool, asked: str | None = None) -> Opening | None:
        """The opening to go on with, if a read transaction can tell it; `None` if writing is needed.

        Allowed reads run here, so they never queue behind writers; so does the lookup of the
        question a round brings an answer to. That lookup neither inspects nor decides: the
        settlement does both, under lock, before anything runs.
        """
        action = self.actions[call.tool]
        if action.read_only:
            allowed = self.store.transaction(lambda tx: self._read(tx, action, call), write=False)
            return Opening(call, final=allowed) if allowed is not None else None
        return self.store.transaction(lambda tx: self._asked(tx, call, human_reachable, asked), write=False)

    def conclude(self, opening: Opening, verdict: Verdict, *, wait: bool = True) -> GateResult:
        """Settle the opening's approval with the human's verdict, running the action on a clean yes."""
        assert opening.approval is not None
        action = self.actions[opening.call.tool]
        return self.store.transaction(lambda tx: self._conclude(tx, action, opening, verdict), wait=wait)

    def facts(self, tx: GateTx, call: Call, inspection: Inspection) -> CallFacts:
        """What the policy judges `call` on, as `decide` would see it (for explaining a decision)."""
        return self._facts(tx, call, inspection)

    def _read(self, tx: GateTx, action: Action, call: Call) -> GateResult | None:
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self._facts(tx, call, inspection))
            if decision.outcome is not Outcome.ALLOW:
                return None
            done = action.execute(tx, call, inspection)
        except Refusal as refusal:
            return GateResult.refused(refusal)
        return worded(self.policy, call, decision, GateResult(Status.EXECUTED, done.summary, details=done.details))

    def _asked(self, tx: GateTx, call: Call, human_reachable: bool, asked: str | None) -> Opening | None:
        """The stored outcome of this call or round, or the question still pending for it."""
        if asked is None:
            return None
        try:
            known = self._recalled(tx, call)
        except Refusal:
            return None  # a conflict is recorded by `open`
        if known is not None:
            return Opening(call, final=known)
        approval = self._round_approval(tx, call, asked)
        if approval is None:
            return None
        if approval.status != "pending":
            return Opening(call, final=_outcome(approval))
        if self.clock() >= approval.expires_at or not human_reachable:
            return None
        return Opening(call, approval=approval, confirm=self.policy.confirm_of(call.tool))

    def _open(
        self,
        tx: GateTx,
        action: Action,
        call: Call,
        human_reachable: bool,
        asked: str | None,
        *,
        only_asking: bool = False,
    ) -> Opening:
        """`only_asking`: the transaction is not durable, so anything but a question raises `_Settles`."""
        now = self.clock()
        known, conflict = self._claim(tx, action, call)
        approval = self._round_approval(tx, call, asked) if asked is not None else None
        if conflict is not None:  # the key holds another request's outcome, which it keeps
            if only_asking:
                raise _Settles from conflict
            failed = GateResult.refused(conflict)
            return Opening(call, final=self._end(tx, call, None, failed, now, approval=approval, remember=False))
        if known is not None:
            return Opening(call, final=known)
        if approval is not None:
            # This round answers a question it was shown: the answer's settlement inspects and decides.
            if approval.status != "pending":
                return Opening(call, final=_outcome(approval))
            if now >= approval.expires_at:
                return Opening(call, final=self._settle(tx, approval, EXPIRED, now, action, call))
            if not human_reachable:
                denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, NO_HUMAN))
                return Opening(call, final=self._end(tx, call, None, denied, now, approval=approval, reason=NO_HUMAN))
            return Opening(call, approval=approval, confirm=self.policy.confirm_of(call.tool))
        decision: Decision | None = None
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self._facts(tx, call, inspection))
        except Refusal as refusal:
            if only_asking:
                raise _Settles from refusal
            return Opening(call, final=self._end(tx, call, decision, GateResult.refused(refusal), now))
        if only_asking and decision.outcome is not Outcome.REQUIRE_APPROVAL:
            raise _Settles
        if decision.outcome is Outcome.ALLOW:
            result = self._execute(tx, action, call, inspection)
            ended = self._end(
                tx, call, decision, result, now, reason=decision.reason, amount_minor=inspection.amount_minor
            )
            return Opening(call, final=ended)
        if decision.outcome is Outcome.DENY:
            denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, decision.reason))
            return Opening(call, final=self._end(tx, call, decision, denied, now, reason=decision.reason))
        if not human_reachable:
            denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, NO_HUMAN))
            return Opening(call, final=self._end(tx, call, decision, denied, now, reason=NO_HUMAN))
        return self._pending(tx, action, call, inspection, decision, now, only_asking)

    def _pending(
        self,
        tx: GateTx,
        action: Action,
        call: Call,
        inspection: Inspection,
        decision: Decision,
        now: float,
        only_asking: bool,
    ) -> Opening:
        """The question for this call: the one its idempotency key already asked, or a new one.

        Only a keyed call shares a question (with calls under the same key); a call without a
        key is a request of its own, however like another it looks.
        """
        binding = call.binding(self.policy.version)
        shared = call.idempotency_key is not None
        pending = tx.pending_approval(binding) if shared else None
        if pending is not None and now >= pending.expires_at:
            # The key's question went unanswered: that is the key's outcome.
            if only_asking:
                raise _Settles
            return Opening(call, final=self._settle(tx, pending, EXPIRED, now, action, call))
        if pending is None:
            ref = "APR-" + secrets.token_hex(5).upper()
            question = render_question(call, inspection, decision, ref)
            pending = tx.create_approval(
                Approval(
                    ref=ref,
                    binding=binding,
                    tool=call.tool,
                    arguments=call.arguments,
                    principal=call.principal,
                    policy_version=decision.policy_version,
                    question=question,
                    created_at=now,
                    expires_at=now + self.approval_ttl,
                    asked_digest=question_digest(question, confirmed=decision.confirm is not None),
                    bound=inspection.bound,
                ),
                shared=shared,
            )
            if pending.ref == ref:
                self._audit(tx, call, decision, "requested", now, approval=pending, reason=decision.reason)
        return Opening(call, approval=pending, confirm=decision.confirm)

    def _claim(self, tx: GateTx, action: Action, call: Call) -> tuple[GateResult | None, Refusal | None]:
        """Take this call's turns, in lock order (its principal's, then its key's), before any
        other lock; then what its key holds: an outcome, or the conflict of another request's."""
        self._take_turn(tx, action, call)
        try:
            return self._recalled(tx, call), None
        except Refusal as conflict:
            return None, conflict

    def _recalled(self, tx: GateTx, call: Call) -> GateResult | None:
        """The stored outcome of this call's idempotency key (raises `Refusal` if it is another request's)."""
        if call.idempotency_key is None:
            return None
        stored = tx.recall(call.idempotency_key, call.request_digest)
        return GateResult.from_json(stored) if stored is not None else None

    def _round_approval(self, tx: GateTx, call: Call, asked: str) -> Approval | None:
        """The approval whose question this round was shown, if it is this very call's."""
        approval = tx.approval_asked(asked)
        if approval is None or approval.binding != call.binding(self.policy.version):
            return None
        return approval

    def _conclude(self, tx: GateTx, action: Action, opening: Opening, verdict: Verdict) -> GateResult:
        assert opening.approval is not None
        call = opening.call
        known, conflict = self._claim(tx, action, call)
        approval = tx.lock_approval(opening.approval.ref)
        if approval is None:
            raise LookupError(f"approval {opening.approval.ref} vanished")
        if approval.status != "pending":
            return _outcome(approval)  # already settled: an approval is used once
        now = self.clock()
        if conflict is not None:  # the key was settled meanwhile for another request: it keeps that outcome
            return self._end(tx, call, None, GateResult.refused(conflict), now, approval=approval, remember=False)
        if known is not None:  # the key was settled meanwhile by another question of this request
            denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, _KEY_SETTLED))
            self._end(tx, call, None, denied, now, approval=approval, remember=False)
            return known
        if now >= approval.expires_at:
            verdict = Verdict(VerdictKind.EXPIRE, "The answer arrived after the approval expired.", verdict.note)
        return self._settle(tx, approval, verdict, now, action, call)

    def _settle(
        self, tx: GateTx, approval: Approval, verdict: Verdict, now: float, action: Action, call: Call
    ) -> GateResult:
        """Settle `approval` with `verdict`; a yes re-decides and runs the action, and that fresh
        decision is the one recorded."""
        amount = 0
        decision: Decision | None = None
        if verdict.kind is VerdictKind.APPROVE:
            result, amount, decision = self._run_approved(tx, action, call, approval)
            self._audit(tx, call, decision, "approved", now, approval=approval, note=verdict.note)
        else:
            status = _STATUS_OF[verdict.kind]
            reason = NO_HUMAN if verdict.kind is VerdictKind.UNDELIVERED else verdict.detail
            result = GateResult(status, decision_message(call.tool, status, reason))
        return self._end(tx, call, decision, result, now, approval=approval, verdict=verdict, amount_minor=amount)

    def _end(
        self,
        tx: GateTx,
        call: Call,
        decision: Decision | None,
        result: GateResult,
        now: float,
        *,
        approval: Approval | None = None,
        verdict: Verdict | None = None,
        reason: str | None = None,
        amount_minor: int = 0,
        remember: bool = True,
    ) -> GateResult:
        """The one place a call ends, whatever ended it: the outcome settles the approval that
        was asked (so any round answering it finds this outcome), is stored under the call's
        idempotency key (unless the key holds another request's outcome: `remember=False`),
        and is audited."""
        note = verdict.note if verdict else None
        detail = reason if reason is not None else (verdict.detail if verdict else "")
        if reason is None:
            reason = verdict.detail if verdict else result.message
        if approval is not None:
            result = replace(result, approval_ref=approval.ref)
        result = worded(self.policy, call, decision, result, detail)
        if approval is not None:
            tx.settle_approval(replace(approval, status=result.status.value, note=note, outcome=result.as_json()))
        if remember and call.idempotency_key is not None:
            tx.remember(call.idempotency_key, call.request_digest, result.as_json())
        executed = result.status is Status.EXECUTED
        self._audit(
            tx, call, decision, result.status.value, now, approval=approval, note=note, reason=reason,
            result=result, amount_minor=amount_minor if executed else 0,
        )  # fmt: skip
        return result

    def _run_approved(
        self, tx: GateTx, action: Action, call: Call, approval: Approval
    ) -> tuple[GateResult, int, Decision | None]:
        """Re-check everything inside the settling transaction, then run the effect.

        Returns the result, the amount moved, and the decision taken now (none if the call
        can no longer be inspected).
        """
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self._facts(tx, call, inspection))
        except Refusal as refusal:
            return GateResult.refused(refusal), 0, None
        if decision.policy_version != approval.policy_version:
            reason = "The policy changed after the question was asked; nothing was done."
            return GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, reason)), 0, decision
        changed = inspection.changed_since(approval.bound)
        if changed is not None:
            return GateResult.refused(changed), 0, decision
        if decision.outcome is Outcome.DENY:
            denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, decision.reason))
            return denied, 0, decision
        result = self._execute(tx, action, call, inspection)
        return result, inspection.amount_minor if result.status is Status.EXECUTED else 0, decision

    def _execute(self, tx: GateTx, action: Action, call: Call, inspection: Inspection) -> GateResult:
        try:
            with tx.savepoint():
                done: Done = action.execute(tx, call, inspection)
        except Refusal as refusal:
            return GateResult.refused(refusal)
        return GateResult(Status.EXECUTED, done.summary, details=done.details)

    def _facts(self, tx: GateTx, call: Call, inspection: Inspection) -> CallFacts:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return CallFacts(
            tool=call.tool,
            arguments=call.arguments,
            principal=call.principal,
            roles=inspection.roles,
            currency=inspection.currency,
            minor_exponent=inspection.minor_exponent,
            amount_minor=inspection.amount_minor,
            accounts=inspection.accounts,
            moved_today_minor=(
                tx.moved_today_minor(call.principal, now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
                if "moved_today_minor" in self.policy.variables(call.tool)
                else 0
            ),
            now=now,
        )

    def _take_turn(self, tx: GateTx, action: Action, call: Call) -> None:
        """Take the principal's turn, first of all locks, if this call may change a total some rule reads."""
        if self._in_turn and not action.read_only:
            tx.take_turn(call.principal)

    def _audit(
        self,
        tx: GateTx,
        call: Call,
        decision: Decision | None,
        event: str,
        at: float,
        *,
        approval: Approval | None = None,
        reason: str = "",
        note: str | None = None,
        result: GateResult | None = None,
        amount_minor: int = 0,
    ) -> None:
        version = approval.policy_version if approval else self.policy.version
        if decision is not None:
            version = decision.policy_version
        tx.append_audit(
            AuditEntry(
                at=at,
                event=event,
                principal=call.principal,
                tool=call.tool,
                arguments=call.arguments,
                policy_version=version,
                matched_rules=decision.matched_rules if decision else (),
                reason=reason,
                approval_ref=approval.ref if approval else None,
                question_sha256=digest(approval.question) if approval else None,
                note=note,
                result=result.as_json() if result else None,
                amount_minor=amount_minor,
            )
        )


def _outcome(approval: Approval) -> GateResult:
    """The stored outcome of a settled approval."""
    assert approval.outcome is not None, "a settled approval has its outcome"
    return GateResult.from_json(approval.outcome)


_KEY_SETTLED = "Its idempotency key was settled meanwhile by another approval; nothing more was done."


class _Settles(Exception):
    """A transaction begun without durability would have settled an outcome; it is redone durably."""


_STATUS_OF = {
    VerdictKind.REJECT: Status.REJECTED,
    VerdictKind.CANCEL: Status.CANCELLED,
    VerdictKind.EXPIRE: Status.EXPIRED,
    VerdictKind.UNDELIVERED: Status.DENIED,
}
