"""The question's confirmation line: what the desk and scripted approvers read back is what the form requires."""

import pytest

from policy.action import Call, Inspection
from policy.decision import Decision
from policy.outcome import Outcome
from policy.question import render_question, requested_confirmation


@pytest.mark.parametrize("memo", ["rent", "pay the rent", "x in the confirmation field. y"])
def test_the_confirmation_read_back_is_the_whole_value(memo: str) -> None:
    call = Call("transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "memo": memo}, "alice")
    decision = Decision(Outcome.REQUIRE_APPROVAL, ("Needs approval.",), (), "sha256:v", confirm="memo")
    question = render_question(
        call, Inspection(("Transfer $1.00 (USD).",)), decision, "APR-0000000001", 1_767_225_900.0
    )
    assert requested_confirmation(question) == memo
