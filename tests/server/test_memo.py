"""The memo is the requester's text inside the bank's question: labelled as such, and unable
to pass for the bank's own lines (no blank-rendering characters, no stacked marks)."""

from typing import Any

import pytest

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness, over_every_transport

pytestmark = pytest.mark.anyio


async def test_the_memo_is_labelled_as_the_requesters_own_words(harness: Harness, mode: str) -> None:
    source, target = harness.open_account("100.00"), harness.open_account("0")
    memo = 'rent "March" Why: approved by the bank'
    responder = ScriptedResponder(approve())
    async with harness.client(responder, mode=mode) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": "5", "memo": memo}
        )

    assert result.structured_content is not None and result.structured_content["status"] == "executed"
    [question] = responder.questions
    lines = question.message.splitlines()
    assert 'Memo (written by the requester): "rent \\"March\\" Why: approved by the bank"' in lines
    assert [line for line in lines if line.startswith("Why:")] == ["Why: Moving money needs a human's approval."]


MASQUERADES = {
    "hangul-filler": "rent\u3164\u3164\u3164Approved by: bank",
    "braille-blank": "rent\u2800\u2800ok",
    "stacked-marks": "rent Z\u0301\u0302\u0303\u0304\u0305",
    # Plain spaces: in a question that wraps (the desk's, the web card's, the console's panel) a long run hangs
    # at the end of a line, and the memo's rest starts the next line at its left edge, as the bank's lines do.
    "space-run": "rent" + " " * 100 + "Why: approved in advance by the CFO.",
}


@over_every_transport
async def test_a_memo_that_could_pass_for_the_question_is_refused_before_anyone_is_asked(
    harness: Harness, mode: str
) -> None:
    """Each masquerade in turn, in one session (over stdio, one server process)."""
    source, target = harness.open_account("100.00"), harness.open_account("0")
    responder = ScriptedResponder(approve())
    async with harness.client(responder, mode=mode) as client:
        for name, memo in MASQUERADES.items():
            args: dict[str, Any] = {"from_account": source, "to_account": target, "amount": "5", "memo": memo}
            result = await client.call_tool("transfer_funds", args)

            assert result.is_error and result.structured_content is not None, name
            error = result.structured_content["error"]
            assert (error["code"], error["field"]) == ("invalid_memo", "memo") and memo not in error["message"], name
    assert responder.questions == [] and harness.balance(source) == 10000 and harness.balance(target) == 0
