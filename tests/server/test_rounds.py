"""2026-07-28 rounds driven by hand: replays, forgeries and expiry of the sealed request state.

`Client.call_tool` normally drives the `InputRequiredResult` loop; here each round is sent
explicitly so a test can replay, tamper with, or delay it.
"""

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import text

from mcp_server.audit import reader as audit_log
from policy.testing import ScriptedResponder
from tests.server.harness import APPROVAL_TIMEOUT, Harness

pytestmark = pytest.mark.anyio

ASK = "policy.approval_round:ask"
APPROVE = types.ElicitResult(action="accept", content={"approve": True})


async def first_round(client: Client, args: dict[str, Any]) -> types.InputRequiredResult:
    result = await client.session.call_tool("transfer_funds", args, allow_input_required=True)
    assert isinstance(result, types.InputRequiredResult), result
    assert list(result.input_requests) == [ASK]
    return result


async def answer(
    client: Client, args: dict[str, Any], state: str | None, response: types.ElicitResult = APPROVE, key: str = ASK
) -> types.CallToolResult | types.InputRequiredResult:
    return await client.session.call_tool(
        "transfer_funds", args, input_responses={key: response}, request_state=state, allow_input_required=True
    )


def accounts(harness: Harness) -> dict[str, Any]:
    return {"from_account": harness.open_account("100"), "to_account": harness.open_account("0"), "amount": "25"}


async def test_replayed_round_returns_the_original_outcome(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, args)
        executed = await answer(client, args, round1.request_state)
        replayed = await answer(client, args, round1.request_state)
        replayed_no = await answer(client, args, round1.request_state, types.ElicitResult(action="decline"))

    assert isinstance(executed, types.CallToolResult) and executed.structured_content is not None
    assert executed.structured_content["status"] == "executed"
    assert replayed == executed and replayed_no == executed
    assert harness.balance(args["to_account"]) == 2500
    assert harness.events(executed.structured_content["approval_ref"]) == ["requested", "approved", "executed"]


@pytest.mark.parametrize("forgery", ["flipped-byte", "other-arguments", "garbage"])
async def test_forged_or_moved_state_is_refused(harness: Harness, forgery: str) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, args)
        state = round1.request_state or ""
        target = args
        if forgery == "flipped-byte":
            state = state[:-5] + ("A" if state[-5] != "A" else "B") + state[-4:]
        elif forgery == "other-arguments":
            target = {**args, "amount": "99"}
        else:
            state = "v1.not-a-sealed-state"
        with pytest.raises(MCPError) as refused:
            await answer(client, target, state)

    assert refused.value.error.code == types.INVALID_PARAMS
    assert "Invalid or expired requestState" in refused.value.error.message
    assert harness.balance(args["from_account"]) == 10000


async def test_answers_without_state_or_for_unasked_questions_run_nothing(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, args)
        no_state = await answer(client, args, None)
        unasked = await answer(client, args, round1.request_state, key="policy.approval_round:other")

    assert isinstance(no_state, types.InputRequiredResult) and isinstance(unasked, types.InputRequiredResult)
    assert reference(unasked) == reference(round1)  # the question asked again, unanswered
    assert reference(no_state) != reference(round1)  # without state, a new call: a question of its own
    assert harness.balance(args["from_account"]) == 10000
    assert [r["event"] for r in harness.audit() if r["arguments"].get("from_account") == args["from_account"]] == [
        "requested",
        "requested",
    ]


async def test_a_late_answer_expires(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, args)
        await anyio.sleep(APPROVAL_TIMEOUT + 0.3)
        late = await answer(client, args, round1.request_state)

    assert isinstance(late, types.CallToolResult) and late.structured_content is not None
    assert late.structured_content["status"] == "expired"
    assert harness.balance(args["from_account"]) == 10000
    assert harness.events(late.structured_content["approval_ref"]) == ["requested", "expired"]


async def test_state_of_another_principal_is_refused(harness: Harness) -> None:
    if harness.transport != "http":
        pytest.skip("principals are authenticated over HTTP only")
    args = accounts(harness)
    async with harness.client(ScriptedResponder(), principal="local") as alice:
        round1 = await first_round(alice, args)
    async with harness.client(ScriptedResponder(), principal="other") as mallory:
        with pytest.raises(MCPError) as refused:
            await answer(mallory, args, round1.request_state)

    assert refused.value.error.code == types.INVALID_PARAMS
    assert harness.balance(args["from_account"]) == 10000


def reference(round_: types.InputRequiredResult) -> str:
    request = round_.input_requests[ASK]
    assert isinstance(request, types.ElicitRequest)
    return request.params.message.rsplit("Reference: ", 1)[1].strip()


async def test_an_answer_whose_question_never_reached_the_disk_is_asked_again(harness: Harness) -> None:
    """A new question commits without waiting for the disk; a power cut may take it back. Undo
    that transaction by hand (the approval and its audit record, the chain head rewound) and
    answer: nothing runs, the question is asked afresh, and the chain stays intact."""
    args = accounts(harness)
    head = harness.db.read(lambda c: c.exec_driver_sql("SELECT seq, hash FROM audit_head").one())
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, args)
        lost = reference(round1)

        def forget(conn: Any) -> None:
            conn.execute(text("DELETE FROM audit_log WHERE seq > :seq"), {"seq": head[0]})
            conn.execute(text("UPDATE audit_head SET seq = :seq, hash = :hash"), {"seq": head[0], "hash": head[1]})
            conn.execute(text("DELETE FROM approvals WHERE ref = :ref"), {"ref": lost})

        harness.db.run(forget)
        again = await answer(client, args, round1.request_state)

        assert isinstance(again, types.InputRequiredResult)
        assert reference(again) != lost
        assert harness.balance(args["to_account"]) == 0
        assert harness.events(lost) == [] and harness.events(reference(again)) == ["requested"]
        assert audit_log.verify(harness.db)[1] == []
        done = await answer(client, args, again.request_state)

    assert isinstance(done, types.CallToolResult) and done.structured_content is not None
    assert done.structured_content["status"] == "executed" and harness.balance(args["to_account"]) == 2500
