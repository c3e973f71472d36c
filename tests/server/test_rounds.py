"""2026-07-28 rounds driven by hand: replays, forgeries and expiry of the sealed request state.

`Client.call_tool` normally drives the `InputRequiredResult` loop; here each round is sent
explicitly so a test can replay, tamper with, or delay it.
"""

from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import text

from mcp_server.audit import reader as audit_log
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from policy.testing import ScriptedResponder
from tests.server.harness import Harness, over_every_transport, over_http
from tests.support import APPROVAL_TIMEOUT, APPROVE, ASK, answer, first_round, keyed, outcome

pytestmark = pytest.mark.anyio

TOOL = "transfer_funds"


def accounts(harness: Harness) -> dict[str, Any]:
    return {"from_account": harness.open_account("100"), "to_account": harness.open_account("0"), "amount": "25"}


@over_every_transport
async def test_replayed_round_returns_the_original_outcome(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)
        executed = await answer(client, TOOL, args, round1.request_state)
        replayed = await answer(client, TOOL, args, round1.request_state)
        replayed_no = await answer(client, TOOL, args, round1.request_state, types.ElicitResult(action="decline"))

    assert isinstance(executed, types.CallToolResult) and executed.structured_content is not None
    assert executed.structured_content["status"] == "executed"
    assert replayed == executed and replayed_no == executed
    assert harness.balance(args["to_account"]) == 2500
    assert harness.events(executed.structured_content["approval_ref"]) == ["requested", "approved", "executed"]


@pytest.mark.parametrize("forgery", ["flipped-byte", "other-arguments", "garbage"])
async def test_forged_or_moved_state_is_refused(harness: Harness, forgery: str) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)
        state = round1.request_state or ""
        target = args
        if forgery == "flipped-byte":
            state = state[:-5] + ("A" if state[-5] != "A" else "B") + state[-4:]
        elif forgery == "other-arguments":
            target = {**args, "amount": "99"}
        else:
            state = "v1.not-a-sealed-state"
        with pytest.raises(MCPError) as refused:
            await answer(client, TOOL, target, state)

    assert refused.value.error.code == types.INVALID_PARAMS
    assert "Invalid or expired requestState" in refused.value.error.message
    assert harness.balance(args["from_account"]) == 10000


async def test_answers_without_state_or_for_unasked_questions_run_nothing(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)
        no_state = await answer(client, TOOL, args, None)
        unasked = await answer(client, TOOL, args, round1.request_state, input_key="policy.approval_round:other")

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
        round1 = await first_round(client, TOOL, args)
        await anyio.sleep(APPROVAL_TIMEOUT + 0.3)
        late = await answer(client, TOOL, args, round1.request_state)

    assert isinstance(late, types.CallToolResult) and late.structured_content is not None
    assert late.structured_content["status"] == "expired"
    assert harness.balance(args["from_account"]) == 10000
    assert harness.events(late.structured_content["approval_ref"]) == ["requested", "expired"]


@over_http  # principals are authenticated over HTTP only
async def test_state_of_another_principal_is_refused(harness: Harness) -> None:
    args = accounts(harness)
    async with harness.client(ScriptedResponder(), principal="local") as alice:
        round1 = await first_round(alice, TOOL, args)
    async with harness.client(ScriptedResponder(), principal="other") as mallory:
        with pytest.raises(MCPError) as refused:
            await answer(mallory, TOOL, args, round1.request_state)

    assert refused.value.error.code == types.INVALID_PARAMS
    assert harness.balance(args["from_account"]) == 10000


def reference(round_: types.InputRequiredResult) -> str:
    request = (round_.input_requests or {})[ASK]
    assert isinstance(request, types.ElicitRequest)
    return request.params.message.rsplit("Reference: ", 1)[1].strip()


async def test_an_answer_whose_question_never_reached_the_disk_is_asked_again(harness: Harness) -> None:
    """A new question commits without waiting for the disk; a power cut may take it back. Undo
    that transaction by hand (the approval and its audit record, and the sequencer's batch that
    chained it if one did: it would have been lost with it) and answer: nothing runs, the question
    is asked afresh, and the chain stays intact."""
    args = accounts(harness)
    Sequencer(harness.db, AuditWriter()).chain()
    head = harness.db.read(lambda c: c.exec_driver_sql("SELECT MAX(seq) FROM audit_heads").scalar_one())
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)
        lost = reference(round1)

        def forget(conn: Any) -> None:
            conn.execute(text("DELETE FROM audit_log WHERE approval_ref = :ref"), {"ref": lost})
            conn.execute(text("DELETE FROM audit_heads WHERE seq > :seq"), {"seq": head})
            conn.execute(text("DELETE FROM approvals WHERE ref = :ref"), {"ref": lost})

        harness.db.run(forget)
        again = await answer(client, TOOL, args, round1.request_state)

        assert isinstance(again, types.InputRequiredResult)
        assert reference(again) != lost
        assert harness.balance(args["to_account"]) == 0
        assert harness.events(lost) == [] and harness.events(reference(again)) == ["requested"]
        assert audit_log.verify(harness.db).findings == []
        done = await answer(client, TOOL, args, again.request_state)

    assert isinstance(done, types.CallToolResult) and done.structured_content is not None
    assert done.structured_content["status"] == "executed" and harness.balance(args["to_account"]) == 2500


async def test_one_round_answered_many_times_at_once_settles_once(harness: Harness) -> None:
    """Yeses and noes to the same sealed round, sent together: one settles the approval, every reply is
    that outcome, and the money moves at most once."""
    args = accounts(harness)
    no = types.ElicitResult(action="accept", content={"approve": False})
    replies: list[types.CallToolResult | types.InputRequiredResult] = []
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)

        async def send(response: types.ElicitResult) -> None:
            replies.append(await answer(client, TOOL, args, round1.request_state, response))

        async with anyio.create_task_group() as group:
            for response in (APPROVE, no, APPROVE, no, APPROVE, APPROVE):
                group.start_soon(send, response)

    assert all(isinstance(r, types.CallToolResult) for r in replies), replies
    assert all(r == replies[0] for r in replies)
    settled = outcome(replies[0])
    moved = {"executed": 2500, "rejected": 0}[settled["status"]]
    assert harness.balance(args["to_account"]) == moved and harness.balance(args["from_account"]) == 10000 - moved
    assert harness.events(settled["approval_ref"])[-1] == settled["status"]
    assert harness.events(settled["approval_ref"]).count(settled["status"]) == 1


async def test_a_round_whose_key_went_to_another_request_answered_again_is_that_refusal_again(
    harness: Harness,
) -> None:
    """A keyed question's key used meanwhile for another call (allowed, it ran): answering the question is
    the key's conflict, which settles the approval; the same answer sent again (a lost reply retried) is that
    stored outcome again, as every replayed round is, never an internal error."""
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args, meta=keyed("shared"))
        small = outcome(await client.call_tool(TOOL, {**args, "amount": "1"}, meta=keyed("shared")))
        first = await answer(client, TOOL, args, round1.request_state, meta=keyed("shared"))
        again = await answer(client, TOOL, args, round1.request_state, meta=keyed("shared"))

    assert small["status"] == "executed"
    assert outcome(first)["error"]["code"] == "idempotency_conflict"
    assert again == first, again
    assert harness.balance(args["to_account"]) == 100
    assert harness.events(reference(round1)) == ["requested", "failed"]


MALFORMED_ANSWERS: dict[str, types.InputResponse] = {
    "not-an-elicitation": types.ListRootsResult(roots=[]),
    "unknown-action": types.ElicitResult.model_construct(action="approve", content={"approve": True}),
    "nested-content": types.ElicitResult.model_construct(action="accept", content={"approve": {"yes": True}}),
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # the client serializes the hand-made malformed answers
@pytest.mark.parametrize("malformed", list(MALFORMED_ANSWERS))
async def test_a_malformed_answer_is_refused_naming_it_and_the_question_stays_open(
    harness: Harness, malformed: str
) -> None:
    """An answer that is no elicitation answer at all is a clear refusal naming the field (never the SDK's
    'Invalid request parameters' nor its resolver's error): nothing is recorded or settled, and the same
    round can still be answered properly."""
    args = accounts(harness)
    async with harness.client(ScriptedResponder()) as client:
        round1 = await first_round(client, TOOL, args)
        bad = await client.session.call_tool(
            TOOL,
            args,
            input_responses={ASK: MALFORMED_ANSWERS[malformed]},
            request_state=round1.request_state,
            allow_input_required=True,
        )
        refused = outcome(bad)
        assert isinstance(bad, types.CallToolResult) and bad.is_error and refused["status"] == "failed", refused
        assert refused["error"]["code"] == "invalid_answer" and refused["error"]["field"] == "inputResponses"
        assert "approval question" in refused["message"] and "Nothing was done" in refused["message"]
        assert "Resolver" not in refused["message"]
        assert harness.events(reference(round1)) == ["requested"]
        done = await answer(client, TOOL, args, round1.request_state)

    assert outcome(done)["status"] == "executed" and harness.balance(args["to_account"]) == 2500
    assert harness.events(reference(round1)) == ["requested", "approved", "executed"]
