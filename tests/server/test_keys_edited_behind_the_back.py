"""An idempotency key's stored outcome deleted behind the server's back (in memory and on PostgreSQL).

The key's row is what a retry finds; the ledger's `transactions.idempotency_key` (UNIQUE) is the second
line of defence the schema promises: one key never produces two movements, even if the first line is
gone. A retry after the row was deleted must move nothing more, allowed or approved.
"""

import pytest
from sqlalchemy import text

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import keyed

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("amount", "answers"), [("0.50", 0), ("30", 2)])
async def test_a_key_whose_stored_outcome_was_deleted_moves_money_once(
    harness: Harness, mode: str, amount: str, answers: int
) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": amount}
    responder = ScriptedResponder(*[approve()] * answers)
    async with harness.client(responder, mode=mode) as client:
        first = await client.call_tool("transfer_funds", args, meta=keyed(f"once-{source}"))
        assert first.structured_content is not None and first.structured_content["status"] == "executed"
        harness.db.run(lambda conn: conn.execute(text("DELETE FROM idempotency_keys")))
        again = await client.call_tool("transfer_funds", args, meta=keyed(f"once-{source}"))

    assert again.structured_content is not None and again.structured_content["status"] != "executed"
    moved = harness.balance(target)
    assert moved == harness.ledger.balance(target).balance_minor == round(float(amount) * 100), "moved once"
    assert harness.ledger.check_invariants() == []
