"""Desk approvals through the SDK's own client and server: the host shows the link once and the call
completes when the "desk" decides, on both protocol revisions.

The tool here stands in for bankgate's desk channel (its wire shapes, not its policy): on
2025-11-25 it asks with a URL-mode `elicitation/create`, holds the call until decided and sends
`notifications/elicitation/complete`; on 2026-07-28 it answers each call with the same URL input
request until decided. The end-to-end run against bankgate's server is in `test_desk_host.py`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.mcpserver import Context

from agent_host.approvers import ApprovalDesk, ConsoleApprover, DenyApprover, Question
from agent_host.foundry.function_tools import FunctionCall, Toolbox
from agent_host.foundry.pending_keys import PendingKeys
from agent_host.mcp_link import DESK_POLL_SECONDS, IDEMPOTENCY_KEY_META, McpLink, McpTarget, ToolResult

from .helpers import CapturedDisplay, scripted

pytestmark = pytest.mark.anyio
URL = "http://localhost:8766/desk/approvals/APR-7"


class StandInDesk:
    """A tool whose approval is decided "at the desk" when the test says so."""

    def __init__(self) -> None:
        self.decided = anyio.Event()
        self.calls = 0
        self.accepted: list[str] = []
        self.server = MCPServer("stand-in")
        self.server.tool(name="transfer_funds")(self.transfer_funds)

    async def transfer_funds(self, amount: str, ctx: Context) -> dict[str, Any] | mcp_types.InputRequiredResult:
        self.calls += 1
        message = f"Approval required: transfer_funds\nTransfer {amount}. Reference: APR-7"
        if ctx.protocol_version == "2025-11-25":  # one held call
            answer = await ctx.elicit_url(message, URL, "APR-7")
            self.accepted.append(answer.action)
            if answer.action != "accept":
                return {"status": "cancelled"}
            await self.decided.wait()
            await ctx.session.send_elicit_complete("APR-7")
            return {"status": "executed", "approval_ref": "APR-7"}
        for response in (ctx.input_responses or {}).values():
            assert isinstance(response, mcp_types.ElicitResult) and response.content is None
            self.accepted.append(response.action)
            if response.action != "accept":
                return {"status": "cancelled"}
        if self.decided.is_set():
            return {"status": "executed", "approval_ref": "APR-7"}
        request = mcp_types.ElicitRequest(params=mcp_types.ElicitRequestURLParams(message=message, url=URL))
        return mcp_types.InputRequiredResult(input_requests={"desk": request}, request_state="waiting")


@pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["2025-11-25", "2026-07-28"])
async def test_the_link_is_shown_once_and_the_call_completes_when_the_desk_decides(mode: str) -> None:
    stand_in = StandInDesk()
    display = CapturedDisplay()
    desk = ApprovalDesk(scripted("reject"), display, approval_timeout=60)
    async with Client(
        stand_in.server,
        mode=mode,
        elicitation_callback=desk,
        message_handler=desk.on_message,  # type: ignore[arg-type]
        input_required_max_rounds=100,
    ) as client:
        started = time.monotonic()
        async with anyio.create_task_group() as tasks:

            async def decide_later() -> None:
                await anyio.sleep(2.5)
                stand_in.decided.set()

            tasks.start_soon(decide_later)
            with anyio.fail_after(30):
                result = await client.call_tool("transfer_funds", {"amount": "100.00"})
        assert time.monotonic() - started >= 2.5, "the call waited for the desk"
    assert result.structured_content == {"status": "executed", "approval_ref": "APR-7"}
    ((question, answer),) = desk.records
    assert question.url == URL and question.reference == "APR-7" and question.held == (mode == "legacy")
    assert answer.action == "accept" and answer.label == "sent to the desk"
    assert display.text.count(URL) == 1, "the full link, shown once"
    assert "Waiting for the desk to decide (until " in display.text
    assert "approved" not in display.text.replace("approval", "")
    if mode == "legacy":
        assert stand_in.calls == 1 and stand_in.accepted == ["accept"]
        with anyio.fail_after(5):
            while "decided at the desk (APR-7)" not in display.text:
                await anyio.sleep(0.05)
    else:
        # Asked again at the desk's pace, not in a tight loop: about one call per poll interval.
        assert 2 <= stand_in.calls <= 2 + 2.5 / DESK_POLL_SECONDS + 1
        assert set(stand_in.accepted) == {"accept"}
    assert desk.approver.name == "scripted" and desk.approver._answers, "a desk link uses up no script line"  # type: ignore[attr-defined]


async def test_past_the_deadline_the_host_stops_waiting_and_cancels() -> None:
    stand_in = StandInDesk()
    display = CapturedDisplay()
    desk = ApprovalDesk(ConsoleApprover(display.console), display, approval_timeout=1.5)
    async with Client(
        stand_in.server,
        elicitation_callback=desk,
        input_required_max_rounds=100,  # type: ignore[arg-type]
    ) as client:
        with anyio.fail_after(30):
            result = await client.call_tool("transfer_funds", {"amount": "100.00"})
    assert result.structured_content == {"status": "cancelled"}
    assert stand_in.accepted[-1] == "cancel"
    assert [answer.label for _, answer in desk.records] == ["sent to the desk", "cancelled"]
    assert "the desk did not decide before the deadline" in display.text


async def test_a_host_with_nobody_to_ask_declines_a_desk_link() -> None:
    desk = ApprovalDesk(DenyApprover(), CapturedDisplay())
    params = mcp_types.ElicitRequestURLParams(message="Approve?", url=URL, elicitation_id="APR-7")
    result = await desk(None, params)  # type: ignore[arg-type]
    assert result == mcp_types.ElicitResult(action="decline")


def test_a_desk_question_carries_its_reference_and_no_form() -> None:
    question = Question.from_url_params(mcp_types.ElicitRequestURLParams(message="m", url=URL + "/"))
    assert question.at_desk and not question.held and question.fields == () and question.reference == "APR-7"
    assert Question("Approval required\nReference: APR-9", ()).reference == "APR-9"


class PendingOnly:
    """A tool answering `pending_approval` (the server's way for a client it cannot ask) until decided."""

    def __init__(self) -> None:
        self.decided = False
        self.refs: list[str | None] = []
        self.keys: list[object] = []
        self.server = MCPServer("pending-only")
        self.server.tool(name="transfer_funds")(self.transfer_funds)

    async def transfer_funds(self, amount: str, ctx: Context, approval_ref: str | None = None) -> dict[str, Any]:
        self.refs.append(approval_ref)
        self.keys.append((ctx.request_context.meta or {}).get(IDEMPOTENCY_KEY_META))
        if self.decided and approval_ref == "APR-7":
            return {"status": "executed", "approval_ref": "APR-7"}
        return {
            "status": "pending_approval",
            "message": f"Open {URL}, decide, then ask me to continue.",
            "approval_ref": "APR-7",
            "approval_url": URL,
            "expires_at": "2999-01-01T00:00:00Z",
        }


async def _toolbox_call(stand_in: PendingOnly, desk: ApprovalDesk) -> ToolResult:
    async with Client(stand_in.server, elicitation_callback=desk) as client:  # type: ignore[arg-type]
        link = McpLink.over(client, list((await client.list_tools()).tools), McpTarget())
        toolbox = Toolbox(link, desk=desk)
        call = FunctionCall("call-1", "transfer_funds", '{"amount": "100.00"}')
        return await toolbox.run(call, toolbox.tools, PendingKeys())


async def test_a_pending_approval_result_is_followed_like_a_desk_link() -> None:
    stand_in = PendingOnly()
    display = CapturedDisplay()
    desk = ApprovalDesk(scripted(), display, approval_timeout=60)

    async def decide_later() -> None:
        await anyio.sleep(2.0)
        stand_in.decided = True

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(decide_later)
        with anyio.fail_after(30):
            result = await _toolbox_call(stand_in, desk)
    assert result.output == {"status": "executed", "approval_ref": "APR-7"}
    assert stand_in.refs[0] is None and set(stand_in.refs[1:]) == {"APR-7"}
    assert set(stand_in.keys) == {"call-1"}, "continued under the key the approver's signature names"
    assert len(stand_in.refs) <= 2 + 2.0 / DESK_POLL_SECONDS + 1, "called again at the desk's pace"
    ((question, _),) = desk.records
    assert question.deadline == datetime(2999, 1, 1, tzinfo=UTC).timestamp(), "the result's own deadline"
    assert display.text.count(URL) == 2, "the full link, shown once (the server's message names it too)"


async def test_a_withdrawn_pending_approval_goes_to_the_model_as_it_is() -> None:
    stand_in = PendingOnly()
    desk = ApprovalDesk(DenyApprover(), CapturedDisplay())
    result = await _toolbox_call(stand_in, desk)
    assert result.output["status"] == "pending_approval" and stand_in.refs == [None]
