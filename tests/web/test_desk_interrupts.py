"""Desk approvals as AG-UI interrupts (raw HTTP + SSE, every event parsed strictly): the interrupt
carries the desk link instead of a form, a resume before the desk decided raises it again, and the
run continues with the decision an approver signed at the desk."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
from ag_ui.core import RunErrorEvent, ToolCallStartEvent

from agent_host.approvers import Question
from agent_host.emulator import Emulator
from agent_host.settings import McpProtocol, Transport
from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import Item, RunDriver, ThreadRun, _current
from tests.host.desk_lab import DeskLab
from tests.host.helpers import balance, settings_for

from .helpers import interrupt_of, run, run_input, tool_results, types, web_for

pytestmark = pytest.mark.anyio


def resume(interrupt_id: str, status: str = "resolved", **extra: object) -> list[dict[str, object]]:
    return [{"interruptId": interrupt_id, "status": status, **extra}]


@pytest.mark.parametrize(
    ("transport", "protocol"), [("sdk", "auto"), ("rest", "legacy")], ids=["sdk-2026-07-28", "rest-2025-11-25"]
)
async def test_a_desk_approval_is_an_interrupt_with_the_link(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, protocol: McpProtocol
) -> None:
    lab = DeskLab.create(tmp_path)
    target = lab.target(settings_for(emulator, agent_name))
    async with (
        web_for(emulator, tmp_path, agent_name, target=target, transport=transport, mcp_protocol=protocol) as web,
        lab.approver() as (desk, passkey),
        httpx2.AsyncClient(timeout=60) as client,
    ):
        asked = await run(client, web.url, run_input("t", "Transfer $100 from ACC-001 to ACC-002."))
        assert "TOOL_CALL_RESULT" not in types(asked), "nothing runs before the desk decides"
        interrupt = interrupt_of(asked)
        ref = interrupt.metadata["reference"]
        assert interrupt.reason == "desk_approval_required" and interrupt.response_schema is None
        started = asked[1]
        assert isinstance(started, ToolCallStartEvent), types(asked)
        assert interrupt.tool_call_id == started.tool_call_id
        assert interrupt.metadata["channel"] == "desk" and interrupt.metadata["desk_status"] == "waiting"
        assert interrupt.metadata["approval_url"] == f"{lab.origin}/desk/approvals/{ref}"
        assert "transfer_funds at the approval desk" in interrupt.message and ref in interrupt.message
        assert datetime.fromisoformat(interrupt.expires_at) > datetime.now(UTC)

        early = interrupt_of(await run(client, web.url, run_input("t", resume=resume(interrupt.id))))
        assert (early.id, early.metadata["reference"]) == (interrupt.id, ref), "the same interrupt, raised again"
        assert early.metadata["desk_status"] == "still_pending"
        with_form = await run(client, web.url, run_input("t", resume=resume(interrupt.id, payload={"approve": True})))
        assert types(with_form) == ["RUN_STARTED", "RUN_ERROR"] and isinstance(with_form[-1], RunErrorEvent)
        assert with_form[-1].code == "invalid_payload"
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")

        decided = await desk.decide(ref, "approved", passkey, note="rent")
        assert decided.status_code == 200, decided.text
        done = await run(client, web.url, run_input("t", resume=resume(interrupt.id)))
        assert types(done)[-1] == "RUN_FINISHED", types(done)
        (result,) = tool_results(done)
        assert result["status"] == "executed" and result["approval_ref"] == ref
        assert await balance(web.host, "ACC-002") == Decimal("350.00")

        rejected = interrupt_of(await run(client, web.url, run_input("t", "Transfer $200 from ACC-002 to ACC-003.")))
        reply = await desk.decide(rejected.metadata["reference"], "rejected", passkey, note="no")
        assert reply.status_code == 200, reply.text
        out = await run(client, web.url, run_input("t", resume=resume(rejected.id)))
        assert tool_results(out)[0]["status"] == "rejected"

        withdrawn = interrupt_of(await run(client, web.url, run_input("t", "Transfer $5 from ACC-001 to ACC-003.")))
        out = await run(client, web.url, run_input("t", resume=resume(withdrawn.id, "cancelled")))
        # The host answers the link with `cancel` (2025-11-25) or declines it (2026-07-28); the server
        # settles it or leaves it at the desk (the model is told how to continue), executing nothing.
        assert tool_results(out)[0]["status"] in ("cancelled", "pending_approval")
        assert types(out)[-1] == "RUN_FINISHED", "a withdrawn link is not raised again"

        amounts = [await balance(web.host, account) for account in ("ACC-001", "ACC-002", "ACC-003")]
        assert amounts == [Decimal("4900.00"), Decimal("350.00"), Decimal("120.00")]


@pytest.mark.parametrize("url", ["javascript:fetch('/agent',{method:'POST'})", "data:text/html,<script>1</script>"])
async def test_a_desk_link_that_is_not_a_web_page_is_never_put_in_the_page(url: str) -> None:
    # The chat makes the link a clickable <a href>: a script URL would run in the page's origin.
    driver = RunDriver(InterruptStore(5.0))
    thread = ThreadRun("t")
    thread.sink, source = anyio.create_memory_object_stream[Item](math.inf)
    _current.set(thread)
    with anyio.fail_after(2):
        answer = await driver.answer(Question("Approve at the desk.", (), url=url))
    assert answer.action == "decline" and answer.desk
    thread.sink.close()
    assert [item async for item in source] == [], "no interrupt was raised"
