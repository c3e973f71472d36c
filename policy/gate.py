"""The gate: decide a call, ask a human when the policy says so, and settle it exactly once.

Invariants held here (each settled inside one store transaction with the effect):
- nothing runs unapproved: `execute` is reached only from an allow decision, or from a
  pending approval whose answer was a clean yes, re-decided under the same policy version;
- an approval is used at most once: settling requires it to be pending, under a lock;
- what runs is what was shown: the approval is bound to the call's digest and to the facts
  its inspection declares (`Inspection.bound`, compared again under lock before anything
  runs), and the question is rendered once from server state and stored; an answer settles
  only while the stored question is still the one it was given to;
- a replayed round or a retried idempotency key returns the stored outcome and runs nothing:
  every call ends in `Settlement.end`, which settles its approval (found again by any round answering
  it), stores the outcome under its key, and audits it;
- two calls are two requests: only the same idempotency key shares a question, and a round
  answers the one approval whose question it was shown (`Approval.asked_digest`);
- decisions on totals over a principal's calls (`facts.AGGREGATES`) are taken in that
  principal's turn, as is every call that could change them, so concurrent calls cannot
  together pass a limit; so is a new question under `max_pending`, which no principal's
  concurrent calls can together pass either (one caller cannot bury the approvers);
- an outcome is on disk before it is returned; only a transaction that merely creates the
  pending approval for a new question commits without waiting for the disk, since losing it
  (to a power cut) leaves an answer with no question, which is asked again.
"""

import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from policy.action import Action, Call, Inspection
from policy.approval_states import ApprovalState
from policy.canonical import canonical_json, digest
from policy.channel import DEFAULT_CHANNEL, Channel, route
from policy.decision import Decision
from policy.document import Policy
from policy.facts import AGGREGATES, CallFacts
from policy.messages import worded
from policy.outcome import Outcome
from policy.question import deadline_text, render_question
from policy.results import GateResult, Refusal, Status
from policy.settlement import NO_HUMAN, Settlement, denied
from policy.store import APPROVER_PREFIX, Approval, DeskSignoff, GateStore, GateTx
from policy.verdict import CLOCK_SET_BACK, EXPIRED, Verdict, VerdictKind

logger = logging.getLogger(__name__)

QuestionDigest = Callable[[str, bool], str]
"""The digest of a question as the asking channel puts it (text, whether a confirmation is typed back):
what a round answering it names. The MCP adapter's is the SDK's (`policy.mcp.asked.question_digest`)."""


def plain_question_digest(question: str, confirmed: bool) -> str:
    """A channel-neutral question digest, for gates no protocol round answers."""
    return digest({"question": question, "confirmed": confirmed})


@dataclass(frozen=True)
class Opening:
    """The first half of a gated call: either its final result, or the approval to ask about."""

    call: Call
    final: GateResult | None = None
    approval: Approval | None = None
    confirm: str | None = None
    """The argument the approver must type back, if the policy asks for one."""
    channel: Channel = Channel.FORM
    """Where the approval is asked: the client's form, or the desk (`Channel.DESK`)."""

    @property
    def confirmation(self) -> str | None:
        """What the approver must type back, if anything."""
        return None if self.confirm is None else str(self.call.arguments[self.confirm])


@dataclass(frozen=True)
class ExpiryBatch:
    """What one transaction of `Gate.expire_overdue` did."""

    ended: int
    looked: int
    """Approvals it took up (ended, left to a desk yes, or unreadable): fewer than its limit, none is left."""
    unreadable: dict[str, str]
    """The references of rows it could not read or settle, each with why; left pending."""


class Gate:
    """Decides calls and opens their questions; `Settlement` ends them. Blocking: async callers go
    through `store.run`, which decides where the work runs."""

    def __init__(
        self,
        policy: Policy,
        store: GateStore[Any],
        actions: Mapping[str, Action],
        *,
        approval_ttl: float = 300.0,
        clock: Callable[[], float] = time.time,
        question_digest: QuestionDigest = plain_question_digest,
        max_pending: int | None = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.actions = dict(actions)
        self.approval_ttl = approval_ttl
        self.clock = clock
        self.question_digest = question_digest
        self.max_pending = max_pending
        """Questions one principal may have waiting for an answer at once (`None`: no cap); calls waiting in
        this process for a human too (`waiting`)."""
        self._waiting: dict[str, int] = {}
        self.settlement = Settlement(policy, lambda: self.clock())
        self._in_turn = any(AGGREGATES & policy.variables(tool) for tool in self.actions)
        """Whether calls that may change money take the principal's turn: some rule reads a total."""

    def open(
        self, call: Call, *, human_reachable: bool, desk: bool = False, asked: str | None = None, glance: bool = True
    ) -> Opening:
        """Decide `call`; run it now if allowed, else return the approval to ask about.

        `human_reachable`: the client can show a form; `desk`: the server has an approval desk the
        caller can be sent to. The rule's channel and these choose where the question goes.

        `asked`: the digest of the question a 2026-07-28 round answers (from its sealed state),
        which names the approval it answers; `None` for a new call.
        First tries `glance` (unless told not to); whatever must write is decided again in a
        write transaction.
        A new call of a tool that asks by default is expected to end in a question, so its
        transaction starts without durability; if it would settle anything after all, it is
        discarded (rolled back) and done again durably.
        """
        if glance and self.may_glance(call.tool, asked):
            seen = self.glance(call, human_reachable=human_reachable, asked=asked)
            if seen is not None:
                return seen
        action = self.actions[call.tool]
        reach = (human_reachable, desk)
        if asked is None and (human_reachable or desk) and self.policy.asks_by_default(call.tool):
            question = self.store.transaction(lambda tx: self._ask(tx, action, call, reach), durable=False)
            if question is not None:
                return question
        return self.store.transaction(lambda tx: self._open(tx, action, call, reach, asked))

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

    def resume(self, call: Call, ref: str) -> Opening:
        """A call presenting approval `ref` again (after the desk was asked): the stored outcome if the
        approval is settled; settled now if the desk has decided (a yes continued past `Approval.continue_by`:
        `expired`, nothing run) or its deadline passed; else the same approval, still pending. Raises
        `Refusal("approval_mismatch")` if `ref` was not asked for this very call (tool, arguments, caller):
        nothing changes then."""
        action = self.actions[call.tool]
        return self.store.transaction(lambda tx: self._resume(tx, action, call, ref))

    def desk_decided(self, ref: str) -> bool:
        """Whether the desk has a decision on approval `ref` (a cheap read, for waiting on it)."""
        return self.store.transaction(lambda tx: tx.desk_decision(ref) is not None, write=False)

    def waiting(self, principal: str) -> AbstractContextManager[Refusal | None]:
        """Hold one of `principal`'s `max_pending` places to wait in this process for a human (a 2025-11-25 call
        waiting inline) while the block runs; gives the refusal instead when every place is held. Calls under
        one idempotency key share one question, so the cap on questions alone does not bound them. For the
        event loop only (no lock)."""
        return _Place(self._waiting, principal, self.max_pending)

    def conclude(self, opening: Opening, verdict: Verdict) -> GateResult:
        """Settle the opening's approval with the human's verdict, running the action on a clean yes."""
        assert opening.approval is not None
        action = self.actions[opening.call.tool]
        return self.store.transaction(lambda tx: self._conclude(tx, action, opening, verdict))

    def expire_overdue(self, grace: float, limit: int, passed: Collection[str] = ()) -> ExpiryBatch:
        """End the questions whose callers never came back (at most `limit`, in one transaction).

        Each approval still pending `grace` seconds past its deadline, or read on a clock set back since it was
        asked (`Approval.set_back`: at once, as its caller would find it over now), is settled as its caller coming
        back now would find it settled: `expired` (a desk no signed in time: `rejected`), the outcome stored under its
        idempotency key, its record signed, all in the transaction that settles it. `grace` lets whatever was
        answered in time (a desk decision's POST, a round already on its way) reach its row first. Rows another
        transaction holds, or whose key's turn it holds, are left to it; a signed desk yes is left to its caller
        (`resume` runs it) until `grace` past `Approval.continue_by`, then ended `expired` too; a void one
        (`DeskSignoff.void`: its approver revoked, or linked to the requester) is ended at once, `denied` as its
        caller continuing it would find it, whatever its deadline. A row edited in
        the database so that it cannot be read, or names a tool this gate lacks, is left pending and reported
        (`ExpiryBatch.unreadable`), so it holds up none of the others; `passed`: those reported before, not
        looked at again. A first read tells whether any is due, so an idle sweep writes nothing."""
        looked = self.clock()
        if not self.store.transaction(
            lambda tx: tx.overdue(looked, grace, 1, passed, timeout=self.approval_ttl), write=False
        ):
            return ExpiryBatch(0, 0, {})
        return self.store.transaction(lambda tx: self._expire(tx, grace, limit, passed))

    def _expire(self, tx: GateTx[Any], grace: float, limit: int, passed: Collection[str]) -> ExpiryBatch:
        now = self.clock()
        due = tx.overdue(now, grace, limit, passed, timeout=self.approval_ttl)
        ended = 0
        unreadable: dict[str, str] = {}
        for ref in due:
            try:
                approval = tx.lock_approval(ref)
            except (ValueError, TypeError) as exc:  # a column edited to text the store cannot decode
                unreadable[ref] = f"{type(exc).__name__}: {exc}"
                continue
            if approval is None or approval.tool not in self.actions:
                unreadable[ref] = f"no tool {approval.tool!r}" if approval else "gone"
                continue
            signoff = tx.desk_decision(approval.ref)
            desk = _desk_verdict(signoff, approval)
            void = desk is not None and desk.kind is VerdictKind.VOID
            if not (void or approval.over(now - grace) or approval.set_back(now)):
                unreadable[ref] = "its desk yes does not match the approval as stored"  # edited: not due either
                continue
            if signoff is not None and desk is not None:
                if (
                    desk.kind is VerdictKind.APPROVE
                    and not approval.set_back(now)
                    and approval.continue_by(signoff.decided_at) > now - grace
                ):
                    continue  # still its caller's to run: the store leaves these out unless the row was forged
                verdict, answered = _continued_in_time(desk, signoff, approval, now), signoff.decided_at
            else:
                verdict, answered = _expiry(approval, now), now
            call = Call(approval.tool, approval.arguments, approval.principal, approval.idempotency_key)
            action = self.actions[call.tool]
            self._settle(tx, action, call, approval, verdict, self._key_state(tx, call), now, answered)
            ended += 1
        return ExpiryBatch(ended, len(due), unreadable)

    def facts(self, tx: GateTx[Any], call: Call, inspection: Inspection, at: float | None = None) -> CallFacts:
        """What the policy judges `call` on, as `decide` would see it (for explaining a decision), at `at`."""
        return self.settlement.facts(tx, call, inspection, at)

    def _read(self, tx: GateTx[Any], action: Action, call: Call) -> GateResult | None:
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self.facts(tx, call, inspection))
            if decision.outcome is not Outcome.ALLOW:
                return None
            done = action.execute(tx, call, inspection, None)
        except Refusal as refusal:
            return GateResult.refused(refusal)
        return worded(self.policy, call, decision, GateResult(Status.EXECUTED, done.summary, details=done.details))

    def _asked(self, tx: GateTx[Any], call: Call, human_reachable: bool, asked: str | None) -> Opening | None:
        """The stored outcome of this call or round, or the question still pending for it."""
        if asked is None:
            return None
        tx.expect_asked(asked)
        try:
            known = self._recalled(tx, call)
        except Refusal:
            return None  # a conflict is recorded by `open`
        if known is not None:
            return Opening(call, final=known)
        approval = self._round_approval(tx, call, asked)
        if approval is None:
            return None
        if approval.status != ApprovalState.PENDING:
            return Opening(call, final=_outcome(approval))
        if approval.over(self.clock()) or not human_reachable:
            return None
        return Opening(call, approval=approval, confirm=self.policy.confirm_of(call.tool, call.arguments))

    def _ask(self, tx: GateTx[Any], action: Action, call: Call, reach: tuple[bool, bool]) -> Opening | None:
        """A new call's question, in a transaction without durability; `None` (and the transaction
        discarded) if the call would settle something instead, which must be done durably."""
        now = self.clock()
        binding = call.binding(self.policy.version)
        action.expect(tx, call)
        if call.idempotency_key is not None:  # its key's question, if pending, is shared (`_question`)
            tx.expect_pending(binding)
        known, conflict = self._claim(tx, action, call, asking=now)
        if known is not None:
            return Opening(call, final=known)
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self.facts(tx, call, inspection, now))
        except Refusal:
            decision = None
        channel = _channel(decision, reach) if decision is not None else None
        asks = decision is not None and decision.outcome is Outcome.REQUIRE_APPROVAL
        if conflict is not None or decision is None or not asks or channel is None:
            tx.discard()
            return None
        question = self._question(tx, call, inspection, decision, now, binding)
        if question.over(now):  # the key's question went unanswered: `_open` settles it, durably
            tx.discard()
            return None
        return Opening(call, approval=question, confirm=decision.confirm, channel=channel)

    def _open(
        self, tx: GateTx[Any], action: Action, call: Call, reach: tuple[bool, bool], asked: str | None
    ) -> Opening:
        human_reachable = reach[0]
        now = self.clock()
        if asked is not None:
            tx.expect_asked(asked)
        else:
            action.expect(tx, call)
        known, conflict = self._claim(tx, action, call, asking=now)
        approval = self._round_approval(tx, call, asked) if asked is not None else None
        end = self.settlement.end
        if conflict is not None:  # the key holds another request's outcome, which it keeps
            if approval is not None and approval.status != ApprovalState.PENDING:
                return Opening(call, final=_outcome(approval))  # a replay: the conflict settled it before
            failed = GateResult.refused(conflict)
            return Opening(call, final=end(tx, call, None, failed, now, approval=approval, remember=False))
        if known is not None:
            return Opening(call, final=known)
        if approval is not None:
            # This round answers a question it was shown: the answer's settlement inspects and decides.
            if approval.status != ApprovalState.PENDING:
                return Opening(call, final=_outcome(approval))
            if approval.over(now):
                expired = self.settlement.settle(tx, approval, _expiry(approval, now), now, action, call)
                return Opening(call, final=expired)
            if not human_reachable:
                refused = denied(call, NO_HUMAN)
                return Opening(call, final=end(tx, call, None, refused, now, approval=approval, reason=NO_HUMAN))
            return Opening(call, approval=approval, confirm=self.policy.confirm_of(call.tool, call.arguments))
        decision: Decision | None = None
        try:
            inspection = action.inspect(tx, call)
            decision = self.policy.decide(self.facts(tx, call, inspection, now))
        except Refusal as refusal:
            return Opening(call, final=end(tx, call, decision, GateResult.refused(refusal), now))
        if decision.outcome is Outcome.ALLOW:
            result = self.settlement.execute(tx, action, call, inspection)
            ended = end(tx, call, decision, result, now, reason=decision.reason, ran=inspection)
            return Opening(call, final=ended)
        if decision.outcome is Outcome.DENY:
            return Opening(
                call, final=end(tx, call, decision, denied(call, decision.reason), now, reason=decision.reason)
            )
        channel = _channel(decision, reach)
        if channel is None:
            return Opening(call, final=end(tx, call, decision, denied(call, NO_HUMAN), now, reason=NO_HUMAN))
        question = self._question(tx, call, inspection, decision, now, call.binding(self.policy.version))
        if question.over(now):  # the key's question went unanswered: that is the key's outcome
            return Opening(call, final=self.settlement.settle(tx, question, _expiry(question, now), now, action, call))
        return Opening(call, approval=question, confirm=decision.confirm, channel=channel)

    def _question(
        self, tx: GateTx[Any], call: Call, inspection: Inspection, decision: Decision, now: float, binding: str
    ) -> Approval:
        """This call's question: a new one, or the one its idempotency key already asked, still pending
        (perhaps expired: a new question's deadline is always ahead, the TTL being positive).

        Only a keyed call shares a question (with calls under the same key); a call without a key
        is a request of its own, however like another it looks. `binding` is the call's under this
        policy; the key's question pending under it, if `_ask` announced it (`expect_pending`), was
        read with the transaction's first round trip, and the new one's insert goes with the COMMIT;
        else the new one is offered first and the key's read only if one is pending (`create_approval`).

        Past `max_pending` questions of its principal a new one is refused (`too_many_pending`), and
        the transaction with it: nothing is written. A key's question asked again is not a new one.
        """
        waiting = tx.waiting(call.principal, now) if self.max_pending is not None else 0
        ref = "APR-" + os.urandom(5).hex().upper()  # `secrets.token_hex(5)`, less four calls
        expires_at = now + self.approval_ttl
        question = render_question(call, inspection, decision, ref, expires_at)
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
                expires_at=expires_at,
                asked_digest=self.question_digest(question, decision.confirm is not None),
                bound=inspection.bound,
                channel=decision.channel or DEFAULT_CHANNEL,
                idempotency_key=call.idempotency_key,
            ),
            shared=call.idempotency_key is not None,
        )
        if pending.ref == ref and self.max_pending is not None and waiting >= self.max_pending:
            raise _too_many_pending(f"You already have {self.max_pending} approvals waiting for a human")
        if pending.ref == ref:
            self.settlement.audit(tx, call, decision, "requested", now, approval=pending, reason=decision.reason)
        return pending

    def _claim(
        self, tx: GateTx[Any], action: Action, call: Call, *, asking: float | None = None
    ) -> tuple[GateResult | None, Refusal | None]:
        """Take this call's turns, in lock order (its principal's, then its key's), before any
        other lock; then what its key holds: an outcome, or the conflict of another request's.
        `asking`: the time at which this transaction may ask a new question, counted against
        `max_pending` in the principal's turn (the count read after the turn, with the key's).

        The reads announced before it (`expect`) go in the same round trip as the key's, after the
        turns: what they lock is locked in that order still."""
        counted = asking if self.max_pending is not None and not action.read_only else None
        if counted is not None or (self._in_turn and not action.read_only):
            tx.take_turn(call.principal)
        if counted is not None:
            tx.expect_waiting(call.principal, counted)
        return self._key_state(tx, call)

    def _key_state(self, tx: GateTx[Any], call: Call) -> tuple[GateResult | None, Refusal | None]:
        """What the call's idempotency key holds: its outcome, or the conflict of another request's."""
        try:
            return self._recalled(tx, call), None
        except Refusal as conflict:
            return None, conflict

    def _recalled(self, tx: GateTx[Any], call: Call) -> GateResult | None:
        """The stored outcome of this call's idempotency key (raises `Refusal` if it is another request's)."""
        if call.idempotency_key is None:
            return None
        stored = tx.recall(call.idempotency_key, call.request_digest)
        return GateResult.from_json(stored) if stored is not None else None

    def _round_approval(self, tx: GateTx[Any], call: Call, asked: str) -> Approval | None:
        """The approval whose question this round was shown, if it is this very call's."""
        approval = tx.approval_asked(asked)
        if approval is None or approval.binding != call.binding(self.policy.version):
            return None
        return approval

    def _conclude(self, tx: GateTx[Any], action: Action, opening: Opening, verdict: Verdict) -> GateResult:
        assert opening.approval is not None
        call = opening.call
        tx.expect_approval(opening.approval.ref)
        if verdict.kind is VerdictKind.APPROVE:  # the settlement inspects the call again, under lock
            action.expect(tx, call)
        known, conflict = self._claim(tx, action, call)
        approval = tx.lock_approval(opening.approval.ref)
        if approval is None:
            raise LookupError(f"approval {opening.approval.ref} vanished")
        if approval.status != ApprovalState.PENDING:
            return _outcome(approval)  # already settled: an approval is used once
        shown = opening.approval
        if approval.question != shown.question or approval.asked_digest != shown.asked_digest:
            logger.warning("approval %s no longer stores the question its answer was given to; refused", approval.ref)
            raise Refusal(
                "approval_mismatch",
                f"Approval {approval.ref} no longer holds the question this answer was given to; nothing was done.",
            )
        now = self.clock()
        answered = now
        if verdict.kind is VerdictKind.APPROVE:  # a no signed at the desk meanwhile is not undone by this yes
            signoff = tx.desk_decision(approval.ref)
            desk = _desk_verdict(signoff, approval)
            if signoff is not None and desk is not None and desk.kind is VerdictKind.REJECT:
                verdict, answered = desk, signoff.decided_at
        return self._settle(tx, action, call, approval, verdict, (known, conflict), now, answered)

    def _resume(self, tx: GateTx[Any], action: Action, call: Call, ref: str) -> Opening:
        tx.expect_approval(ref)
        known, conflict = self._claim(tx, action, call)
        approval = _presented(tx.lock_approval(ref), call, ref)
        if approval.status != ApprovalState.PENDING:
            return Opening(call, final=_outcome(approval))  # an approval is used once
        if approval.channel is Channel.FORM:  # the desk cannot decide it: no link to wait on there
            raise Refusal(
                "form_only",
                f"Approval {ref} can only be answered in the form it was asked in (the policy's channel is 'form'), "
                "not at the approval desk. Nothing was done.",
                "approval_ref",
            )
        now = self.clock()
        signoff = tx.desk_decision(ref)
        verdict = _desk_verdict(signoff, approval)
        if signoff is None or verdict is None:
            if not approval.over(now):
                return Opening(
                    call,
                    approval=approval,
                    confirm=self.policy.confirm_of(call.tool, call.arguments),
                    channel=Channel.DESK,
                )
            verdict, answered = _expiry(approval, now), now
        else:
            verdict, answered = _continued_in_time(verdict, signoff, approval, now), signoff.decided_at
        return Opening(call, final=self._settle(tx, action, call, approval, verdict, (known, conflict), now, answered))

    def _settle(
        self,
        tx: GateTx[Any],
        action: Action,
        call: Call,
        approval: Approval,
        verdict: Verdict,
        claimed: tuple[GateResult | None, Refusal | None],
        now: float,
        answered: float,
    ) -> GateResult:
        """Settle the locked, pending `approval` with `verdict`, which arrived at `answered`."""
        known, conflict = claimed
        end = self.settlement.end
        if conflict is not None:  # the key was settled meanwhile for another request: it keeps that outcome
            return end(tx, call, None, GateResult.refused(conflict), now, approval=approval, remember=False)
        if known is not None:  # the key was settled meanwhile by another question of this request
            end(tx, call, None, denied(call, _KEY_SETTLED), now, approval=approval, remember=False)
            return known
        if approval.over(answered) and verdict.kind is not VerdictKind.EXPIRE:
            late = _expiry(approval, answered).detail if approval.set_back(answered) else _LATE
            verdict = Verdict(VerdictKind.EXPIRE, late, verdict.note)
        return self.settlement.settle(tx, approval, verdict, now, action, call)


def _channel(decision: Decision, reach: tuple[bool, bool]) -> Channel | None:
    """Where this decision's question can be asked from this client (`None`: nowhere it allows)."""
    form, desk = reach
    return route(decision.channel or Channel.ANY, form=form, desk=desk)


def _presented(approval: Approval | None, call: Call, ref: str) -> Approval:
    """`approval`, if it was asked for exactly this call: same caller, tool, arguments, key and roles."""
    if approval is None or approval.principal != call.principal:
        raise Refusal(
            "approval_mismatch",
            f"There is no approval {ref} for you; call the tool without approval_ref to ask for a new one. "
            "Nothing was done.",
            "approval_ref",
        )
    if approval.asked_digest is None:  # before migration 0006: bound another way, so nothing matches it below
        raise Refusal(
            "approval_mismatch",
            f"Approval {ref} was asked before this server was upgraded and cannot be continued; call the tool "
            "without approval_ref to ask anew. Nothing was done.",
            "approval_ref",
        )
    if approval.tool != call.tool or canonical_json(dict(approval.arguments)) != canonical_json(dict(call.arguments)):
        raise Refusal(
            "approval_mismatch",
            f"Approval {ref} was asked for a different call ({approval.tool} with other arguments); repeat exactly "
            "that call to continue, or call without approval_ref to ask anew. Nothing was done.",
            "approval_ref",
        )
    # The rest of the binding too (idempotency key, the credentials' roles), as a form round's answer is
    # held to it (`_round_approval`): else a yes given to one keyed call would run under another key.
    if approval.binding != call.binding(approval.policy_version):
        raise Refusal(
            "approval_mismatch",
            f"Approval {ref} was asked for this call under another idempotency key or other credentials; repeat "
            "it with the key it was asked with, or call without approval_ref to ask anew. Nothing was done.",
            "approval_ref",
        )
    return approval


def _desk_verdict(signoff: DeskSignoff | None, approval: Approval) -> Verdict | None:
    """The desk's decision as a verdict, if it was signed over this approval as stored; a yes its approver may no
    longer give (revoked, or now the requester's, as the settling transaction reads the roster) is void."""
    if signoff is None:
        return None
    if signoff.binding != approval.binding or signoff.question_sha256 != approval.question_sha256:
        logger.warning("desk decision on %s does not match the approval as stored; ignored", approval.ref)
        return None
    who = APPROVER_PREFIX + signoff.approver
    if not signoff.approved:  # a no stands whoever signed it: nothing runs either way
        return Verdict(VerdictKind.REJECT, f"Rejected at the desk by {who}.", signoff.note, signoff.approver)
    why = signoff.void(approval.principal)
    if why is None:
        return Verdict(VerdictKind.APPROVE, f"Approved at the desk by {who}.", signoff.note, signoff.approver)
    # A revocation (or link) takes effect for every yes not yet run; the approval ends, as the desk lets no one
    # else decide it, and a new call asks again.
    return Verdict(
        VerdictKind.VOID,
        f"Approved at the desk by {who}, {why}; nothing was done. Call again without approval_ref to be asked anew.",
        signoff.note,
        signoff.approver,
    )


def _continued_in_time(verdict: Verdict, signoff: DeskSignoff, approval: Approval, now: float) -> Verdict:
    """The desk's `verdict`, or `expired` for a yes its caller continues at `now`, past `Approval.continue_by`."""
    if verdict.kind is not VerdictKind.APPROVE:
        return verdict
    if approval.set_back(now):  # the yes's window read on this clock would last as much longer as it is off
        return Verdict(VerdictKind.EXPIRE, CLOCK_SET_BACK.detail, signoff.note)
    by = approval.continue_by(signoff.decided_at)
    if now < by:
        return verdict
    return Verdict(
        VerdictKind.EXPIRE,
        f"Approved at the desk by {APPROVER_PREFIX}{signoff.approver} at {deadline_text(signoff.decided_at)} but not "
        f"continued by {deadline_text(by)}; nothing ran.",
        signoff.note,
    )


def _expiry(approval: Approval, now: float) -> Verdict:
    """Why `approval`, unanswered, is over at `now`: its deadline passed, or the clock reads before it was asked."""
    return CLOCK_SET_BACK if approval.set_back(now) else EXPIRED


def _too_many_pending(what: str) -> Refusal:
    return Refusal(
        "too_many_pending",
        f"{what} (the server's max_pending_approvals); wait until one is answered or expires before asking for "
        "another. Nothing was done.",
    )


def _outcome(approval: Approval) -> GateResult:
    """The stored outcome of a settled approval."""
    assert approval.outcome is not None, "a settled approval has its outcome"
    return GateResult.from_json(approval.outcome)


_LATE = "The answer arrived after the approval expired."
_KEY_SETTLED = "Its idempotency key was settled meanwhile by another approval; nothing more was done."


class _Place:
    """One of a principal's places to wait for a human (`Gate.waiting`). A plain class, not `@contextmanager`:
    every inline question enters one, and a generator's machinery costs more than the count it keeps."""

    def __init__(self, waiting: dict[str, int], principal: str, cap: int | None) -> None:
        self._waiting, self._principal, self._cap = waiting, principal, cap
        self._held = False

    def __enter__(self) -> Refusal | None:
        held = self._waiting.get(self._principal, 0)
        if self._cap is not None and held >= self._cap:
            return _too_many_pending(f"{self._cap} of your calls already wait for a human's answer")
        self._waiting[self._principal] = held + 1
        self._held = True
        return None

    def __exit__(self, *exc_info: object) -> None:
        if not self._held:
            return
        if self._waiting[self._principal] > 1:
            self._waiting[self._principal] -= 1
        else:
            del self._waiting[self._principal]
