"""A 2026-07-28 round answers the question it was shown, even if the stored one was rewritten meanwhile.

The round names its question by the SDK's digest of it (`asked_digest`), and finds the approval by that
digest. A database writer who rewrites the stored question and the facts it binds (here a close's balance,
grown by a deposit) must not have the answer settle the rewritten question: the approver typed back the
account and approved sweeping the balance they were shown, not the one written in afterwards.
"""

import mcp_types as types
import pytest
from sqlalchemy import text

from policy.testing import ScriptedResponder
from tests.server.harness import Harness
from tests.support import answer, first_round

pytestmark = pytest.mark.anyio


async def test_a_question_and_its_facts_rewritten_before_the_answer_sweep_nothing_unseen(harness: Harness) -> None:
    account, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ada")
    args = {"account_id": account, "sweep_to": target}
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, "close_account", args)
        harness.ledger.deposit(account, "4900")

        def rewrite(conn: object) -> None:
            for column in ("question", "bound_json"):
                edit = f"UPDATE approvals SET {column} = REPLACE({column}, '$100.00', '$5,000.00')"
                conn.execute(text(edit))  # type: ignore[attr-defined]

        harness.db.run(rewrite)
        yes = types.ElicitResult(action="accept", content={"approve": True, "confirmation": account})
        result = await answer(client, "close_account", args, round1.request_state, yes)

    if isinstance(result, types.CallToolResult):
        assert result.structured_content is not None and result.structured_content["status"] != "executed", result
    assert (harness.balance(account), harness.balance(target)) == (5000_00, 0)
