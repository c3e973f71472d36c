"""The question put to the approver, rendered once from server state and stored.

It must read the same on every protocol round (the SDK re-asks a question whose text
changed), so it is kept with the approval rather than rendered again.
"""

from policy.action import Call, Inspection
from policy.decision import Decision


def render_question(call: Call, inspection: Inspection, decision: Decision, ref: str) -> str:
    lines = [f"Approval required: {call.tool}", *inspection.effect, f"Why: {decision.reason}"]
    if decision.confirm is not None:
        lines.append(f"To approve, also type {call.arguments[decision.confirm]} in the confirmation field.")
    lines += [f"Requested by: {call.principal}", f"Reference: {ref}"]
    return "\n".join(lines)
