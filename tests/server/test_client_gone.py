"""A 2025-11-25 client that goes away while its approval question is open.

Whether it cancels the call, its connection drops, or it exits (stdin closed), nothing runs,
and the question is left as it was: pending until its deadline. Nobody is left to be told an
outcome, so none is recorded; the caller that comes back with its idempotency key is asked the
same question again and gets the one outcome its answer gives.
"""

import anyio
import mcp_types as types
import pytest
from mcp_types.jsonrpc import CONNECTION_CLOSED
from sqlalchemy import text

from policy.testing import ScriptedResponder, approve, silence
from tests.server.harness import Harness
from tests.support import keyed, outcome

pytestmark = pytest.mark.anyio

STATUS = text("SELECT status FROM approvals WHERE ref = :ref")


@pytest.mark.parametrize("harness", ["memory", "stdio", "http"], indirect=True)
async def test_a_client_gone_mid_question_leaves_it_pending_and_its_key_retry_is_asked_again(
    harness: Harness,
) -> None:
    source, target = harness.open_account("50"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "20", "memo": f"gone-{source}"}
    key = keyed(f"gone-{source}")
    walked_away = ScriptedResponder(silence(60))

    async def call() -> None:
        async with harness.client(walked_away, mode="legacy") as client:
            await client.call_tool("transfer_funds", args, meta=key)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        await walked_away.asked()
        group.cancel_scope.cancel()  # the client exits with its question open

    # Over stdio and in memory the server has ended with the client; over HTTP its cancel is on the way.
    await anyio.sleep(0.5)
    records = [r for r in harness.audit(tool="transfer_funds") if r["arguments"]["memo"] == args["memo"]]
    assert [r["event"] for r in records] == ["requested"]
    ref = records[0]["approval_ref"]
    assert harness.db.read(lambda c: c.execute(STATUS, {"ref": ref}).scalar_one()) == "pending"
    assert harness.balance(source) == 5000

    back = ScriptedResponder(approve())
    async with harness.client(back, mode="legacy") as client:
        result = outcome(await client.call_tool("transfer_funds", args, meta=key))
    # The key's question, asked again (or expired, if its 2 s deadline passed meanwhile): not a denial.
    assert result["approval_ref"] == ref
    if result["status"] == "executed":
        assert [q.message for q in back.questions] == [q.message for q in walked_away.questions]
        assert harness.balance(source) == 3000
    else:
        assert result["status"] == "expired", result


async def test_a_client_still_there_that_fails_the_question_is_denied(harness: Harness) -> None:
    """An error in reply to the question (even one naming a closed connection) is not the client gone."""
    source, target = harness.open_account("50"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "20"}

    async def failing(_ctx: object, _params: object) -> types.ErrorData:
        return types.ErrorData(code=CONNECTION_CLOSED, message="Connection closed")

    async with harness.client(failing, mode="legacy") as client:  # type: ignore[arg-type]
        result = outcome(await client.call_tool("transfer_funds", args))
    assert result["status"] == "denied" and "No human can be asked" in result["message"], result
    assert harness.events(result["approval_ref"]) == ["requested", "denied"]
    assert harness.balance(source) == 5000
