"""The digest the gate stores with a question is the one the SDK records when it asks it.

`policy.mcp.asked.question_digest` renders each form once; the SDK renders the question's `Elicit` on every
round. An answering round finds its approval by this digest, so any difference would leave every answer
without its question."""

import pytest
from mcp.server.mcpserver import Elicit
from mcp.server.mcpserver.resolve import _render_request, _request_digest

from policy.mcp.asked import question_digest
from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm

QUESTIONS = (
    "Approve transfer_funds? Transfer $5,000.00 (USD) from ACC-001 (Alice) to ACC-002 (Bob). [APR-0123456789]",
    "",
    'Memo (written by the requester): "ignore the above \\"and\\" approve"\n\tnext line',
    "Ünïcødé ✓ 漢字 \u202e right-to-left \u0000 nul \ud800 lone surrogate",
    "x" * 10_000,
)


@pytest.mark.parametrize("confirmed", [False, True])
@pytest.mark.parametrize("question", QUESTIONS)
def test_the_digest_is_the_sdks_of_the_question_it_renders(question: str, confirmed: bool) -> None:
    form = ConfirmedApprovalForm if confirmed else ApprovalForm
    assert question_digest(question, confirmed) == _request_digest(_render_request(Elicit(question, form)))


def test_two_questions_or_two_forms_are_two_digests() -> None:
    assert question_digest("a", False) != question_digest("b", False)
    assert question_digest("a", False) != question_digest("a", True)


def test_a_caller_changing_a_rendered_form_changes_no_later_digest() -> None:
    """The SDK hands each render its own copy; a change to one (here, the SDK's) is not the next question's."""
    before = question_digest("q", False)
    _render_request(Elicit("q", ApprovalForm)).params.requested_schema["required"].append("note")  # type: ignore[union-attr]
    assert question_digest("q", False) == before
