"""What one request is: each call without a key is its own, a key names one call for good,
and whatever ended a call is what its key and its rounds give back afterwards.

In process on both protocol revisions; concurrent callers are made to meet with
their questions all open before any is answered (`Gathering`).
"""

from typing import Any

import anyio
import mcp_types as types
import pytest

from policy.testing import Answer, ScriptedResponder, approve, cancel, reject, silence
from tests.server.harness import Harness
from tests.server.interleave import Gathering
from tests.support import APPROVAL_TIMEOUT, answer, first_round, keyed, outcome

pytestmark = pytest.mark.anyio


async def test_two_calls_without_a_key_are_two_requests(harness: Harness, mode: str) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "30", "memo": "invoice"}
    gathering = Gathering()
    results: list[dict[str, Any]] = []

    async def pay() -> None:  # two connections, the same words, no key
        async with harness.client(gathering, mode=mode) as client:  # type: ignore[arg-type]
            results.append(outcome(await client.call_tool("transfer_funds", args)))

    async with anyio.create_task_group() as group:
        group.start_soon(pay)
        group.start_soon(pay)
        await gathering.until_asked(2)
        gathering.release()

    assert [r["status"] for r in results] == ["executed", "executed"]
    first, second = (r["approval_ref"] for r in results)
    assert first != second and len({q.message for q in gathering.asked.questions}) == 2
    assert harness.balance(target) == 6000 and harness.balance(source) == 4000
    assert harness.events(first) == harness.events(second) == ["requested", "approved", "executed"]


async def test_same_key_with_other_arguments_approved_at_once_is_a_conflict(harness: Harness, mode: str) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    key = keyed(f"pay-{source}")
    gathering = Gathering()
    results: dict[str, dict[str, Any]] = {}

    async def pay(amount: str) -> None:
        async with harness.client(gathering, mode=mode) as client:  # type: ignore[arg-type]
            args = {"from_account": source, "to_account": target, "amount": amount}
            results[amount] = outcome(await client.call_tool("transfer_funds", args, meta=key))

    async with anyio.create_task_group() as group:
        group.start_soon(pay, "30")
        group.start_soon(pay, "31")
        await gathering.until_asked(2)
        gathering.release()

    [executed] = [amount for amount, r in results.items() if r["status"] == "executed"]
    [conflicted] = [r for r in results.values() if r["status"] != "executed"]
    assert conflicted["status"] == "failed" and conflicted["error"]["code"] == "idempotency_conflict"
    assert harness.events(conflicted["approval_ref"]) == ["requested", "failed"]  # settled and recorded
    assert harness.balance(target) == int(executed) * 100
    async with harness.client(ScriptedResponder(), mode=mode) as client:
        again = outcome(
            await client.call_tool(
                "transfer_funds", {"from_account": source, "to_account": target, "amount": executed}, meta=key
            )
        )
    assert again == results[executed] and harness.balance(target) == int(executed) * 100


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (approve(), "executed"),
        (reject(), "rejected"),
        (cancel(), "cancelled"),
        ("unaffordable", "failed"),
        ("above-ceiling", "denied"),
    ],
    ids=["executed", "rejected", "cancelled", "failed", "denied-by-policy"],
)
async def test_every_settled_outcome_is_remembered_for_its_key(
    harness: Harness, mode: str, first: Answer | str, status: str
) -> None:
    """Whatever ended a keyed call, the same key gets it back, even once the call could run:
    no new question, nothing moves."""
    source, target = harness.open_account("60000" if first == "above-ceiling" else "100"), harness.open_account("0")
    amount = {"unaffordable": "150", "above-ceiling": "50000.01"}.get(str(first), "30")
    args = {"from_account": source, "to_account": target, "amount": amount}
    key = keyed(f"remembered-{source}")
    asked = ScriptedResponder(*([first] if isinstance(first, Answer) else []))
    async with harness.client(asked, mode=mode) as client:
        ended = outcome(await client.call_tool("transfer_funds", args, meta=key))
    harness.ledger.deposit(source, "60000")  # now it could run
    balances = harness.balance(source), harness.balance(target)

    retry = ScriptedResponder(approve())
    async with harness.client(retry, mode=mode) as client:
        again = outcome(await client.call_tool("transfer_funds", args, meta=key))

    assert ended["status"] == status and again == ended
    assert retry.questions == [] and (harness.balance(source), harness.balance(target)) == balances


async def test_an_expired_question_is_remembered_for_its_key_and_its_round(harness: Harness, mode: str) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "30"}
    key = keyed(f"late-{source}")
    retry = ScriptedResponder(approve())
    if mode == "legacy":
        async with harness.client(ScriptedResponder(silence(APPROVAL_TIMEOUT + 1)), mode=mode) as client:
            expired = outcome(await client.call_tool("transfer_funds", args, meta=key))
        late_round: dict[str, Any] = expired
    else:
        async with harness.client(ScriptedResponder(), mode=mode) as client:
            round1 = await first_round(client, "transfer_funds", args, meta=key)
            await anyio.sleep(APPROVAL_TIMEOUT + 0.3)
            # the key is retried first (finding the question expired), then the round is answered
            expired = outcome(await client.session.call_tool("transfer_funds", args, meta=key))
            late_round = outcome(await answer(client, "transfer_funds", args, round1.request_state, meta=key))
    async with harness.client(retry, mode=mode) as client:
        again = outcome(await client.call_tool("transfer_funds", args, meta=key))

    assert expired["status"] == "expired" and late_round == expired and again == expired
    assert retry.questions == [] and harness.balance(target) == 0
    assert harness.events(expired["approval_ref"]) == ["requested", "expired"]


async def test_each_round_answers_its_own_question(harness: Harness) -> None:
    """Two questions for the very same words (2026-07-28): each answer settles the question
    its round was shown, in whatever order they come; a replay returns what its round got."""
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "30"}
    no = types.ElicitResult(action="accept", content={"approve": False})
    async with harness.client(ScriptedResponder()) as client:
        first = await first_round(client, "transfer_funds", args)
        second = await first_round(client, "transfer_funds", args)
        rejected = outcome(await answer(client, "transfer_funds", args, second.request_state, no))
        executed = outcome(await answer(client, "transfer_funds", args, first.request_state))
        replayed = outcome(await answer(client, "transfer_funds", args, first.request_state, no))

    assert rejected["status"] == "rejected" and executed["status"] == "executed" and replayed == executed
    assert rejected["approval_ref"] != executed["approval_ref"]
    assert harness.balance(target) == 3000
