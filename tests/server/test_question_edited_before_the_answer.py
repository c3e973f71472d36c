"""A 2026-07-28 round answers the question it was shown, even if the stored one was rewritten meanwhile.

The round names its question by the SDK's digest of it (`asked_digest`), and finds the approval by that
digest. A database writer who rewrites the stored question and the facts it binds (here a close's balance,
grown by a deposit) must not have the answer settle the rewritten question: the approver typed back the
account and approved sweeping the balance they were shown, not the one written in afterwards.
"""

import mcp_types as types
import pytest
from sqlalchemy import text

from policy.testing import ScriptedResponder, approve
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


async def test_a_payee_rewritten_to_what_the_memo_quotes_is_not_paid(harness: Harness) -> None:
    """The memo is the requester's text inside the question: a bound fact it quotes was never stated by the bank.
    Here the requester's memo names the payee as "Mallory", and a database writer renames the payee's owner and
    rewrites the bound fact to match: the approver was shown a payment to Ben, so nothing is paid."""
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    args = {"from_account": source, "to_account": target, "amount": "25", "memo": f"see {target} (Mallory)"}
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, "transfer_funds", args)

        def rewrite(conn: object) -> None:
            conn.execute(text("UPDATE accounts SET owner = 'Mallory' WHERE id = :a"), {"a": target})  # type: ignore[attr-defined]
            edit = f"UPDATE approvals SET bound_json = REPLACE(bound_json, '{target} (Ben)', '{target} (Mallory)')"
            conn.execute(text(edit))  # type: ignore[attr-defined]

        harness.db.run(rewrite)
        yes = types.ElicitResult(action="accept", content={"approve": True})
        result = await answer(client, "transfer_funds", args, round1.request_state, yes)

    assert isinstance(result, types.CallToolResult) and result.structured_content is not None, result
    assert result.structured_content["status"] != "executed", result
    assert (harness.balance(source), harness.balance(target)) == (100_00, 0)


async def test_a_memo_quoting_what_the_bank_states_runs_as_approved(harness: Harness) -> None:
    """The same check lets an untouched approval run, whatever of its facts the memo repeats."""
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    memo = f"$25.00 (USD) from {source} (Ada) to {target} (Ben)"
    args = {"from_account": source, "to_account": target, "amount": "25", "memo": memo}
    async with harness.client(ScriptedResponder(approve())) as client:
        result = await client.call_tool("transfer_funds", args)

    assert result.structured_content is not None and result.structured_content["status"] == "executed", result
    assert (harness.balance(source), harness.balance(target)) == (75_00, 25_00)
