"""The question put to the approver, rendered once from server state and stored.

It must read the same on every protocol round (the SDK re-asks a question whose text
changed), so it is kept with the approval rather than rendered again.
"""

import re
from datetime import UTC, datetime

from policy.action import Call, Inspection
from policy.decision import Decision

_WHY = "Why: "
_CONFIRM = "To approve, also type {} in the confirmation field."
_CONFIRM_PATTERN = re.compile(r"^To approve, also type (.+) in the confirmation field\.$", re.MULTILINE)
"""The bank's own line, whole: quoted text (a memo, an owner's name) sits inside a line the bank begins,
and has no line breaks, so it can never pass for it. The value is the rest of the line, spaces and all
(a memo typed back): reading less, the desk would find no confirmation and ask for none."""


def render_question(call: Call, inspection: Inspection, decision: Decision, ref: str, deadline: float) -> str:
    """The question for approval `ref`, answerable until `deadline` (epoch seconds): the person answering
    must see it, on any client (a form carries no deadline of its own)."""
    lines = [f"Approval required: {call.tool}", *inspection.effect, f"{_WHY}{decision.reason}"]
    if decision.confirm is not None:
        lines.append(_CONFIRM.format(call.arguments[decision.confirm]))
    lines += [f"Answer by: {deadline_text(deadline)}", requested_by(call.principal), f"Reference: {ref}"]
    return "\n".join(lines)


def stated_effect(question: str) -> list[str]:
    """The lines of a stored question that state what the call does (`Inspection.effect`: amount, accounts and
    owners, memo, balances), between its first line and its `Why:`."""
    lines = question.splitlines()[1:]
    return next((lines[:i] for i, line in enumerate(lines) if line.startswith(_WHY)), lines)


def deadline_text(epoch: float) -> str:
    """A deadline as a person reads it: date, time and zone (a time alone, days away, reads as today's).
    Cut to the second, so never later than the deadline."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span_text(seconds: float) -> str:
    """A duration as a person reads it at a glance (`45 s`, `4 min 05 s`, `2 h 30 min`), whole seconds, never
    negative: how long a question has waited, has left, or is overdue by; how long a desk yes waits for its caller."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def requested_by(principal: str) -> str:
    """The question's line naming the caller who asked (what a settlement holds the settling caller to)."""
    return f"Requested by: {principal}"


def requested_confirmation(question: str) -> str | None:
    """What a question asks the approver to type back, if anything (for scripted approvers)."""
    match = _CONFIRM_PATTERN.search(question)
    return match.group(1) if match else None
