"""How a gated call ends, whatever ended it: an effect run under lock, an outcome stored once.

Everything here runs inside the transaction that settles the call, so the approval's state,
the ledger effect, the idempotency record and the audit entries commit (or not) together.
"""

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from policy.action import CHANGED_SINCE_APPROVAL, Action, Call, Inspection
from policy.approval_states import ApprovalState, ending
from policy.channel import Channel
from policy.decision import Decision
from policy.document import Policy
from policy.facts import CallFacts
from policy.frozen import evolve
from policy.messages import worded
from policy.outcome import Outcome
from policy.question import requested_by
from policy.results import GateResult, Refusal, Status, decision_message
from policy.store import Approval, AuditEntry, GateTx
from policy.verdict import Verdict, VerdictKind

NO_HUMAN = "No human can be asked to approve it from this client, so nothing was done."
DESK_REQUIRED = (
    "The policy requires a signed approval at the approval desk; a form answer is not enough, so nothing was done."
)
FORM_REQUIRED = (
    "The policy requires the approval in the requester's own form; a desk decision is not that, so nothing was done."
)
POLICY_CHANGED = "The policy changed after the question was asked; nothing was done."
_APPROVED = ApprovalState.APPROVED.value
"""Read once: an enum's `.value` is a property lookup, and every approved call records it."""


def denied(call: Call, reason: str) -> GateResult:
    return GateResult(Status.DENIED, decision_message(call.tool, Status.DENIED, reason))


class Settlement:
    """The gate's closing half: settle an approval with a verdict, run an effect, end a call."""

    def __init__(self, policy: Policy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock

    def settle(
        self, tx: GateTx[Any], approval: Approval, verdict: Verdict, now: float, action: Action, call: Call
    ) -> GateResult:
        """Move a pending `approval` by `verdict` (see `approval_states`); a yes re-decides and runs
        the action, and that fresh decision is the one recorded."""
        ran: Inspection | None = None
        decision: Decision | None = None
        if verdict.kind is VerdictKind.APPROVE:
            result, ran, decision = self._run_approved(tx, action, call, approval, now, signed=verdict.signed)
            self.audit(
                tx, call, decision, _APPROVED, now, approval=approval, note=verdict.note,
                reason=verdict.detail if verdict.signed else "",
            )  # fmt: skip
            ending(verdict.kind, result.status)
        else:
            status = Status(ending(verdict.kind).value)
            reason = NO_HUMAN if verdict.kind is VerdictKind.UNDELIVERED else verdict.detail
            result = GateResult(status, decision_message(call.tool, status, reason))
        return self.end(tx, call, decision, result, now, approval=approval, verdict=verdict, ran=ran)

    def end(
        self,
        tx: GateTx[Any],
        call: Call,
        decision: Decision | None,
        result: GateResult,
        now: float,
        *,
        approval: Approval | None = None,
        verdict: Verdict | None = None,
        reason: str | None = None,
        ran: Inspection | None = None,
        remember: bool = True,
    ) -> GateResult:
        """The one place a call ends: the outcome settles the approval that was asked (so any round
        answering it finds this outcome), is stored under the call's idempotency key (unless the
        key holds another request's outcome: `remember=False`), and is audited; `ran`: the inspection
        the effect ran on, whose amount and currency an executed call's record states."""
        note = verdict.note if verdict else None
        detail = reason if reason is not None else (verdict.detail if verdict else "")
        if reason is None:
            reason = verdict.detail if verdict else result.message
        if approval is not None:
            result = evolve(result, approval_ref=approval.ref)
        result = worded(self.policy, call, decision, result, detail)
        outcome = result.as_json()  # once: stored with the approval, under the key and in the record
        if approval is not None:
            tx.settle_approval(evolve(approval, status=outcome["status"], note=note, outcome=outcome))
        if remember and call.idempotency_key is not None:
            tx.remember(call.idempotency_key, call.request_digest, outcome)
        moved = ran if ran is not None and result.status is Status.EXECUTED else None
        self.audit(
            tx, call, decision, outcome["status"], now, approval=approval, note=note, reason=reason,
            outcome=outcome, moved=moved,
        )  # fmt: skip
        return result

    def execute(
        self, tx: GateTx[Any], action: Action, call: Call, inspection: Inspection, approval_ref: str | None = None
    ) -> GateResult:
        """Run the effect (settling `approval_ref`, if any); a refusal rolls back whatever it wrote and
        becomes the result."""
        try:
            with tx.savepoint():
                done = action.execute(tx, call, inspection, approval_ref)
        except Refusal as refusal:
            return GateResult.refused(refusal)
        return GateResult(Status.EXECUTED, done.summary, details=done.details)

    def facts(self, tx: GateTx[Any], call: Call, inspection: Inspection, at: float | None = None) -> CallFacts:
        """What the policy judges `call` on, at `at` (default: now). A call that records its outcome is judged
        at the time its records carry: a total read for a later day than the record is dated (the clock
        passing midnight while the call waited for its turn) would let that day's records exceed a daily limit."""
        now = datetime.fromtimestamp(self.clock() if at is None else at, UTC)
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
                tx.moved_today_minor(
                    call.principal,
                    now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp(),
                    inspection.currency,
                )
                if "moved_today_minor" in self.policy.variables(call.tool)
                else 0
            ),
            now=now,
        )

    def audit(
        self,
        tx: GateTx[Any],
        call: Call,
        decision: Decision | None,
        event: str,
        at: float,
        *,
        approval: Approval | None = None,
        reason: str = "",
        note: str | None = None,
        outcome: Mapping[str, Any] | None = None,
        moved: Inspection | None = None,
    ) -> None:
        """Append the record of `event`; `outcome`: the call's result (`GateResult.as_json`), for the record that
        ends it; `moved`: the inspection of the money it moved (its amount and currency)."""
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
                question_sha256=approval.question_sha256 if approval else None,
                note=note,
                result=outcome,
                amount_minor=moved.amount_minor if moved else 0,
                currency=moved.currency if moved else None,
                idempotency_key=call.idempotency_key,
            )
        )

    def _run_approved(
        self, tx: GateTx[Any], action: Action, call: Call, approval: Approval, now: float, *, signed: bool
    ) -> tuple[GateResult, Inspection | None, Decision | None]:
        """Re-check everything inside the settling transaction, then run the effect.

        Returns the result, the inspection the effect ran on (none if it did not run), and the
        decision taken now (none if the call can no longer be inspected).
        """
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self.facts(tx, call, inspection, now))
        except Refusal as refusal:
            return GateResult.refused(refusal), None, None
        if decision.policy_version != approval.policy_version:
            return denied(call, POLICY_CHANGED), None, decision
        if decision.channel is Channel.DESK and not signed:
            return denied(call, DESK_REQUIRED), None, decision
        if decision.channel is Channel.FORM and signed:  # a form-only question continued at the desk (approval_ref)
            return denied(call, FORM_REQUIRED), None, decision
        changed = inspection.changed_since(approval.bound) or _unshown(approval, call)
        if changed is not None:
            return GateResult.refused(changed), None, decision
        if decision.outcome is Outcome.DENY:
            return denied(call, decision.reason), None, decision
        return self.execute(tx, action, call, inspection, approval.ref), inspection, decision


def _unshown(approval: Approval, call: Call) -> Refusal | None:
    """Why `approval`'s bound facts, or the caller settling it, are not what its question showed (None if
    they are).

    The facts and the caller are stored beside the question, not derived from it: rewritten in the database
    (a close's balance to match a grown one, the caller to another's), they would pass the checks made
    against the row. The question is what the approver saw (checked against the round, or the desk's
    signature, before settling), and it states every bound fact and who asked, so a fact it does not state
    was never shown: nor is one it states only inside another fact, as a memo quoting it."""
    question, bound = approval.question, approval.bound
    facts = list(bound.values())
    times = {fact: question.count(fact) for fact in facts}  # each counted once, not once per fact compared
    unshown = sorted(label for label, value in bound.items() if not _stated(value, facts, times))
    if requested_by(call.principal) not in approval.question.splitlines():
        unshown.append("the caller")
    if not unshown:
        return None
    return Refusal(
        CHANGED_SINCE_APPROVAL,
        f"What approval {approval.ref} is bound to ({', '.join(unshown)}) is not what its question showed; "
        "nothing was done. Call again to be asked about the current state.",
    )


def _stated(value: str, facts: Iterable[str], times: Mapping[str, int]) -> bool:
    """Whether the question states `value` more often than the other `facts` it shows hold it (`times`: how
    often it states each fact): the memo is the requester's text, and may quote an owner or an amount the
    bank never stated."""
    within = 0
    for fact in facts:  # a plain loop: a generator costs a call per fact
        if fact != value:
            within += times[fact] * fact.count(value)
    return times[value] > within
