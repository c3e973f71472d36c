"""A confirmation on an optional argument is asked only when the call carries that argument:
an absent memo has nothing to read back, and once the approver was asked to type `None`."""

from pathlib import Path

import pytest

from policy.question import requested_confirmation
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import outcome

pytestmark = pytest.mark.anyio

POLICY = """
[tools.get_account_balance]
default = "allow"

[tools.transfer_funds]
default = "require_approval"
reason = "Moving money needs approval."
confirm = "memo"

[tools.close_account]
default = "deny"
"""


@pytest.mark.parametrize(
    ("memo", "typed_back"), [(None, None), ("rent for May", "rent for May")], ids=["absent", "given"]
)
async def test_a_confirmation_is_asked_only_for_an_argument_the_call_carries(
    tmp_path: Path, mode: str, memo: str | None, typed_back: str | None
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY, encoding="utf-8")
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}", policy=policy)
    source, target = harness.open_account("10.00"), harness.open_account("0")
    responder = ScriptedResponder(approve())
    args = {"from_account": source, "to_account": target, "amount": "1.00"} | ({"memo": memo} if memo else {})
    async with harness.client(responder, mode=mode) as client:
        moved = outcome(await client.call_tool("transfer_funds", args))

    assert moved["status"] == "executed"
    [question] = responder.questions
    assert requested_confirmation(question.message) == typed_back
    assert "None" not in question.message
    assert harness.balance(target) == 100
