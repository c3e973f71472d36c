"""Confirmation messages a policy owns: what the caller is told after a decision.

A policy may word the result of a call per tool and per rule, for each of `executed`, `rejected`,
`cancelled`, `expired` and `denied`; the wording of a rule that decided the call (matched, with the
decision's outcome) wins over its tool's, and the built-in sentence stays where the policy says
nothing. Templates name facts in braces: the call's arguments by name, and `tool`, `principal`,
`reference`, `reason` and `default` (the built-in sentence). Only plain names are accepted (no
attribute or index access), and `policy check` refuses a name that is not a fact, so a template
cannot fail when a call settles.
"""

import string
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from policy.action import Call
from policy.decision import Decision
from policy.document import Policy
from policy.outcome import Outcome
from policy.results import GateResult

STATUSES = ("executed", "rejected", "cancelled", "expired", "denied")
DECIDED_ENDS: dict[Outcome, tuple[str, ...]] = {
    Outcome.ALLOW: ("executed",),
    Outcome.REQUIRE_APPROVAL: ("executed", "denied"),
    Outcome.DENY: ("denied",),
}
"""The statuses a call a rule of each outcome decided can end in: all a rule may word. A rejected, cancelled or
expired call is settled by its human's answer (or its absence), no decision taken then, so its tool words it."""
FIXED_FACTS = ("tool", "principal", "reference", "reason", "default")


def template_problem(template: Any, arguments: Collection[str] | None) -> str | None:
    """Why `template` cannot be used (`arguments`: the tool's argument names, when known)."""
    if not isinstance(template, str) or not template.strip():
        return "must be a non-empty string"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)]
    except ValueError as exc:
        return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    known = set(FIXED_FACTS) | set(arguments or ())
    for name, spec, conversion in fields:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            return f"may only name facts as {{name}} (found {{{name}...}})"
        if arguments is not None and name not in known:
            return f"names an unknown fact {{{name}}} (facts: {', '.join(sorted(known))})"
    return None


def worded(policy: Policy, call: Call, decision: Decision | None, result: GateResult, reason: str = "") -> GateResult:
    """`result` with the policy's message for its status, if the policy words it for this call."""
    messages = policy.messages_for(call.tool, decision)
    template = messages.get(str(result.status)) if messages else None  # most results are not worded
    if template is None:
        return result
    facts = {name: "" if value is None else str(value) for name, value in call.arguments.items()}
    facts |= {
        "tool": call.tool,
        "principal": call.principal,
        "reference": result.approval_ref or "",
        "reason": reason or (decision.reason if decision else ""),
        "default": result.message,
    }
    return replace(result, message=template.format_map(_Missing(facts)))


class _Missing(dict[str, str]):
    """A fact a checked template names but this call lacks (an optional argument) reads as empty."""

    def __missing__(self, key: str) -> str:
        return ""
