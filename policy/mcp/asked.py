"""How a 2026-07-28 round names the question it answers.

The SDK records, in the sealed request state of every round it asks, a digest of the exact
question it put to the client (`asked`), and accepts an answer only for that rendering. The
question carries its approval's unique reference, so the digest names one approval: the
gate stores it with the approval, and an answering round finds *its* approval by it. Two
calls with the same arguments are two questions, and a round cannot be moved to another.
The digest is the SDK's own (not a copy of it), so the two can never disagree.
"""

from mcp.server.mcpserver import Elicit
from mcp.server.mcpserver.resolve import _decode_state, _render_request, _request_digest

from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm


def question_digest(question: str, confirmed: bool) -> str:
    """The digest under which the SDK records `question` as asked (with the form it comes with)."""
    form = ConfirmedApprovalForm if confirmed else ApprovalForm
    return _request_digest(_render_request(Elicit(question, form)))


def answered_digest(request_state: str | None, wire_key: str) -> str | None:
    """The digest of the question a round answers, from its unsealed request state (None: a new call)."""
    if not request_state:
        return None
    return _decode_state(request_state).asked.get(wire_key)
