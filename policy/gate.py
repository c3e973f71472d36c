"""The gate: decide a call, ask a human when the policy says so, and settle it exactly once.

Invariants held here (each settled inside one store transaction with the effect):
- nothing runs unapproved: `execute` is reached only from an allow decision, or from a
  pending approval whose answer was a clean yes, re-decided under the same policy version;
- an approval is used at most once: settling requires it to be pending, under a lock;
- what runs is what was shown: the approval is bound to the call's digest, and the
  question is rendered once from server state and stored;
- a replayed round or a retried idempotency key returns the stored outcome and runs nothing;
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
from policy.answer import Verdict, VerdictKind
from policy.canonical import digest
from policy.decision import Decision
from policy.document import Policy
from policy.facts import CallFacts
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

    def open(
        self,
        call: Call,
        *,
        human_reachable: bool,
        state_digest: str | None = None,
        glance: bool = True,
        wait: bool = True,
    ) -> Opening:
        """Decide `call`; run it now if allowed, else return the approval to ask about.

        First tries `glance` (unless told not to); whatever must write is decided again in a
        write transaction.
        A new call of a tool that asks by default is expected to end in a question, so its
        transaction starts without durability; if it settles anything after all, it is rolled
        back and done again durably. `wait=False`: raise `StoreBusy` rather than wait for
        another writer.
        """
        if glance and self.may_glance(call.tool, state_digest):
            seen = self.glance(call, human_reachable=human_reachable, state_digest=state_digest)
            if seen is not None:
                return seen
        action = self.actions[call.tool]
        if state_digest is None and human_reachable and self.policy.asks_by_default(call.tool):
            try:
                return self.store.transaction(
                    lambda tx: self._open(tx, action, call, human_reachable, state_digest, only_asking=True),
                    wait=wait,
                    durable=False,
                )
            except _Settles:
                pass
        return self.store.transaction(lambda tx: self._open(tx, action, call, human_reachable, state_digest), wait=wait)

    def may_glance(self, tool: str, state_digest: str | None) -> bool:
        """Whether `glance` can answer this call: a read-only tool, or a round bringing an answer."""
        action = self.actions.get(tool)
        return action is not None and (action.read_only or state_digest is not None)

    def glance(self, call: Call, *, human_reachable: bool, state_digest: str | None = None) -> Opening | None:
        """The opening to go on with, if a read transaction can tell it; `None` if writing is needed.

        Allowed reads run here, so they never queue behind writers; so does the lookup of the
        question a round brings an answer to. That lookup neither inspects nor decides: the
        settlement does both, under lock, before anything runs.
        """
        action = self.actions[call.tool]
        if action.read_only:
            allowed = self.store.transaction(lambda tx: self._read(tx, action, call), write=False)
            return Opening(call, final=allowed) if allowed is not None else None
        return self.store.transaction(lambda tx: self._asked(tx, call, human_reachable, state_digest), write=False)

    def conclude(
        self, opening: Opening, verdict: Verdict, state_digest: str | None = None, *, wait: bool = True
    ) -> GateResult:
        """Settle the opening's approval with the human's verdict, running the action on a clean yes."""
        assert opening.approval is not None
        action = self.actions[opening.call.tool]
        return self.store.transaction(lambda tx: self._conclude(tx, action, opening, verdict, state_digest), wait=wait)

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
        return GateResult(Status.EXECUTED, done.summary, details=done.details)

    def _asked(self, tx: GateTx, call: Call, human_reachable: bool, state_digest: str | None) -> Opening | None:
        """The stored outcome of this call or round, or the question still pending for it."""
        binding = call.binding(self.policy.version)
        known = self._known(tx, call, binding, state_digest)
        if known is not None:
            return Opening(call, final=known)
        pending = tx.pending_approval(binding)
        if pending is None or self.clock() >= pending.expires_at or not human_reachable:
            return None
        return Opening(call, approval=pending, confirm=self.policy.confirm_of(call.tool))

    def _open(
        self,
        tx: GateTx,
        action: Action,
        call: Call,
        human_reachable: bool,
        state_digest: str | None,
        *,
        only_asking: bool = False,
    ) -> Opening:
        """`only_asking`: the transaction is not durable, so anything but a question raises `_Settles`."""
        now = self.clock()
        decision: Decision | None = None
        try:
            binding = call.binding(self.policy.version)
            known = self._known(tx, call, binding, state_digest)
            if known is not None:
                return Opening(call, final=known)
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self._facts(tx, call, inspection))
            if only_asking and decision.outcome is not Outcome.REQUIRE_APPROVAL:
                raise _Settles
            if decision.outcome is Outcome.ALLOW:
                result = self._execute(tx, action, call, inspection)
                return Opening(call, final=self._finish(tx, call, decision, result, inspection.amount_minor))
            if decision.outcome is Outcome.DENY:
                denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, decision.reason))
                return Opening(call, final=self._finish(tx, call, decision, denied))
            if not human_reachable:
                denied = GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, NO_HUMAN))
                self._audit(tx, call, decision, "denied", now, reason=NO_HUMAN, result=denied)
                return Opening(call, final=denied)
            return self._pending(tx, call, inspection, decision, binding, state_digest, now)
        except Refusal as refusal:
            if only_asking:
                raise _Settles from refusal
            # A replayed round may meet the state its own settlement left (funds moved, account closed).
            binding = call.binding(self.policy.version)
            settled = self._settled_round(tx, binding, state_digest)
            if settled is not None:
                return Opening(call, final=settled)
            failed = GateResult.refused(refusal)
            pending = tx.pending_approval(binding) if state_digest is not None else None
            if pending is not None:
                # The answer arrived when the call can no longer run: settle the approval as failed,
                # so that a retry by key gets this outcome instead of the question again.
                return Opening(call, final=self._close(tx, pending, call, decision, failed, state_digest, now))
            self._audit(tx, call, decision, "failed", now, reason=refusal.message, result=failed)
            return Opening(call, final=failed)

    def _pending(
        self,
        tx: GateTx,
        call: Call,
        inspection: Inspection,
        decision: Decision,
        binding: str,
        state_digest: str | None,
        now: float,
    ) -> Opening:
        """The pending approval for this exact call: the one already asked about, or a new one."""
        pending = tx.pending_approval(binding)
        if pending is not None and now >= pending.expires_at:
            expired = self._settle(tx, pending, Verdict(VerdictKind.EXPIRE), None, now, decision=decision)
            if state_digest is not None:  # this round was answering the expired question
                return Opening(call, final=expired)
            pending = None
        if pending is None:
            # Read committed: a settlement that committed after the first look is visible now.
            settled = self._settled_round(tx, binding, state_digest)
            if settled is not None:
                return Opening(call, final=settled)
            ref = "APR-" + secrets.token_hex(5).upper()
            pending = tx.create_approval(
                Approval(
                    ref=ref,
                    binding=binding,
                    tool=call.tool,
                    arguments=call.arguments,
                    principal=call.principal,
                    policy_version=decision.policy_version,
                    question=render_question(call, inspection, decision, ref),
                    created_at=now,
                    expires_at=now + self.approval_ttl,
                )
            )
            if pending.ref == ref:
                self._audit(tx, call, decision, "requested", now, approval=pending, reason=decision.reason)
        return Opening(call, approval=pending, confirm=decision.confirm)

    def _known(self, tx: GateTx, call: Call, binding: str, state_digest: str | None) -> GateResult | None:
        """The stored outcome of this call's idempotency key, or of the round this state answers."""
        if call.idempotency_key is not None:
            stored = tx.recall(call.idempotency_key, call.request_digest)
            if stored is not None:
                return GateResult.from_json(stored)
        return self._settled_round(tx, binding, state_digest)

    def _settled_round(self, tx: GateTx, binding: str, state_digest: str | None) -> GateResult | None:
        """The outcome of the approval this exact round (by its unsealed state) already settled."""
        if state_digest is None:
            return None
        settled = tx.approval_by_state(state_digest)
        if settled is None or settled.binding != binding or settled.outcome is None:
            return None
        return GateResult.from_json(settled.outcome)

    def _conclude(
        self, tx: GateTx, action: Action, opening: Opening, verdict: Verdict, state_digest: str | None
    ) -> GateResult:
        assert opening.approval is not None
        approval = tx.lock_approval(opening.approval.ref)
        if approval is None:
            raise LookupError(f"approval {opening.approval.ref} vanished")
        if approval.status != "pending" and approval.outcome is not None:
            return GateResult.from_json(approval.outcome)  # already settled: an approval is used once
        now = self.clock()
        if now >= approval.expires_at:
            verdict = Verdict(VerdictKind.EXPIRE, "The answer arrived after the approval expired.", verdict.note)
        return self._settle(tx, approval, verdict, state_digest, now, action, opening.call)

    def _settle(
        self,
        tx: GateTx,
        approval: Approval,
        verdict: Verdict,
        state_digest: str | None,
        now: float,
        action: Action | None = None,
        call: Call | None = None,
        *,
        decision: Decision | None = None,
    ) -> GateResult:
        """Settle `approval` with `verdict`; a yes re-decides and runs the action, and that fresh
        decision is the one recorded (else `decision`, when the caller has one)."""
        call = call or Call(approval.tool, approval.arguments, approval.principal)
        amount = 0
        if verdict.kind is VerdictKind.APPROVE and action is not None:
            result, amount, decision = self._run_approved(tx, action, call, approval)
            self._audit(tx, call, decision, "approved", now, approval=approval, note=verdict.note)
        else:
            status = _STATUS_OF[verdict.kind]
            reason = NO_HUMAN if verdict.kind is VerdictKind.UNDELIVERED else verdict.detail
            result = GateResult(status, decision_message(call.tool, status, reason))
        return self._close(tx, approval, call, decision, result, state_digest, now, verdict, amount)

    def _close(
        self,
        tx: GateTx,
        approval: Approval,
        call: Call,
        decision: Decision | None,
        result: GateResult,
        state_digest: str | None,
        now: float,
        verdict: Verdict | None = None,
        amount_minor: int = 0,
    ) -> GateResult:
        """Settle `approval` with `result`: once, remembered under the call's key, and audited."""
        result = replace(result, approval_ref=approval.ref)
        note = verdict.note if verdict else None
        settled = replace(approval, status=result.status.value, state_digest=state_digest, note=note)
        tx.settle_approval(replace(settled, outcome=result.as_json()))
        if call.idempotency_key is not None:
            tx.remember(call.idempotency_key, call.request_digest, result.as_json())
        reason = verdict.detail if verdict else result.message
        self._audit(
            tx, call, decision, result.status.value, now, approval=approval, note=note, reason=reason,
            result=result, amount_minor=amount_minor,
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

    def _finish(
        self, tx: GateTx, call: Call, decision: Decision, result: GateResult, amount_minor: int = 0
    ) -> GateResult:
        """Record an outcome reached without asking anyone (allowed or denied by policy)."""
        if call.idempotency_key is not None:
            tx.remember(call.idempotency_key, call.request_digest, result.as_json())
        executed = result.status is Status.EXECUTED
        self._audit(
            tx,
            call,
            decision,
            result.status.value,
            self.clock(),
            reason=decision.reason,
            result=result,
            amount_minor=amount_minor if executed else 0,
        )
        return result

    def _facts(self, tx: GateTx, call: Call, inspection: Inspection) -> CallFacts:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return CallFacts(
            tool=call.tool,
            arguments=call.arguments,
            principal=call.principal,
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


class _Settles(Exception):
    """A transaction begun without durability would have settled an outcome; it is redone durably."""


_STATUS_OF = {
    VerdictKind.REJECT: Status.REJECTED,
    VerdictKind.CANCEL: Status.CANCELLED,
    VerdictKind.EXPIRE: Status.EXPIRED,
    VerdictKind.UNDELIVERED: Status.DENIED,
}
