"""How a 2026-07-28 round names the question it answers.

The SDK records, in the sealed request state of every round it asks, a digest of the exact
question it put to the client (`asked`), and accepts an answer only for that rendering. The
question carries its approval's unique reference, so the digest names one approval: the
gate stores it with the approval, and an answering round finds *its* approval by it. Two
calls with the same arguments are two questions, and a round cannot be moved to another.
The digest is the SDK's own (not a copy of it), of the request the SDK renders, so the two cannot disagree
(`tests/policy/test_question_digest.py` holds them equal).
"""

from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver.resolve import _decode_state, _request_digest
from mcp_types import ElicitRequest, ElicitRequestFormParams

from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm

_REQUESTED_SCHEMAS = {
    False: render_elicitation_schema(ApprovalForm),
    True: render_elicitation_schema(ConfirmedApprovalForm),
}
"""Each form as the SDK renders it into a question (`render_elicitation_schema`, checked spec-valid), rendered once:
the same for every question, where rendering and checking it again cost a question some dozen calls."""


def question_digest(question: str, confirmed: bool) -> str:
    """The digest under which the SDK records `question` as asked (with the form it comes with): the SDK's digest
    of the request its `Elicit` renders as (`_render_request`: the form's requested schema and the message)."""
    params = ElicitRequestFormParams(message=question, requested_schema=_REQUESTED_SCHEMAS[confirmed])
    return _request_digest(ElicitRequest(params=params))


def answered_digest(request_state: str | None, wire_key: str) -> str | None:
    """The digest of the question a round answers, from its unsealed request state (None: a new call)."""
    if not request_state:
        return None
    return _decode_state(request_state).asked.get(wire_key)
