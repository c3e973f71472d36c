"""The answers a 2026-07-28 round brings, checked at the edge before the SDK's own check.

The SDK refuses a malformed `inputResponses` with a bare 'Invalid request parameters', and an
answer to the approval form that is some other kind of result with its resolver's internal error:
neither tells the caller what was wrong. Here the refusal names the answer and the part of it that
is wrong (never the input itself), structured like every other refusal; nothing runs and nothing
is recorded, so the round can be answered again as it was asked.
"""

from collections.abc import Mapping

from mcp_types import CallToolResult, ElicitResult, InputResponses
from pydantic import TypeAdapter, ValidationError

from mcp_server.tools.common import failed
from policy.mcp.round import ASK_KEY
from policy.results import Refusal

_ANSWERS: TypeAdapter[InputResponses] = TypeAdapter(InputResponses)
_APPROVAL_ANSWER = f"The answer to the approval question (inputResponses['{ASK_KEY}'])"
_NOT_AN_ANSWER = (
    f"{_APPROVAL_ANSWER} must be a form answer: an object with 'action' ('accept', 'decline' or 'cancel') and, "
    "to accept, 'content' holding the form's fields."
)
_PARTS = {
    "action": f"{_APPROVAL_ANSWER} must say 'accept', 'decline' or 'cancel' in 'action'.",
    "content": f"{_APPROVAL_ANSWER} must hold the form's fields in 'content' as text, numbers, true/false or lists "
    "of texts.",
}


def refused_answer(responses: object) -> CallToolResult | None:
    """The refusal of a 2026-07-28 round's malformed `inputResponses` (`mcp_server.edge` asks only of such a round
    that carries some), naming what is wrong; `None` when they are well formed."""
    problem = _problem(responses)
    if problem is None:
        return None
    refusal = Refusal("invalid_answer", problem, "inputResponses")
    return failed(f"Invalid answer: {problem} Nothing was done; answer the question again.", refusal)


def _problem(responses: object) -> str | None:
    """What is wrong with `responses` as the SDK would read them (`None`: nothing)."""
    if not isinstance(responses, Mapping):
        return "inputResponses must be an object holding each question's answer under the question's key."
    try:
        # The core validator itself: `TypeAdapter.validate_python` only wraps it, at a few calls a round.
        answers = _ANSWERS.validator.validate_python(responses, by_alias=True, by_name=False)
    except ValidationError as error:
        locations = [e["loc"] for e in error.errors()]
        if not any(loc[:1] == (ASK_KEY,) for loc in locations):
            return "An entry of inputResponses is not an answer to any question this server asks."
        wrong = sorted({loc[2] for loc in locations if loc[:2] == (ASK_KEY, ElicitResult.__name__) and len(loc) > 2})
        return next((_PARTS[part] for part in wrong if part in _PARTS), _NOT_AN_ANSWER)
    if ASK_KEY in answers and not isinstance(answers[ASK_KEY], ElicitResult):
        return _NOT_AN_ANSWER
    return None
