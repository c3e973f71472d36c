"""A prompt-injected model against the web front end: the ids of its calls cannot make one call pass for another."""

from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from ag_ui.core import BaseEvent, RunAgentInput, ToolCallArgsEvent

from agent_host.conversation import Conversation
from agent_host.emulator import Emulator
from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import RunDriver, ThreadRun
from tests.host.helpers import HostileModel, balance, call_item, host_for
from tests.host.test_link_recovery import _children

from .helpers import interrupt_of, run, run_input, strict, tool_results, web_for

pytestmark = pytest.mark.anyio


def transfer(to: str, amount: str) -> str:
    return json.dumps({"from_account": "ACC-001", "to_account": to, "amount": amount, "memo": None})


async def _events(driver: RunDriver, body: dict[str, Any]) -> list[Any]:
    with anyio.fail_after(30):
        events = [event async for event in driver.run(RunAgentInput.model_validate(body))]
    return [
        strict(event.model_dump_json(by_alias=True, exclude_none=True))
        for event in events
        if isinstance(event, BaseEvent)
    ]


async def test_a_call_id_used_again_is_shown_as_another_call_not_over_the_one_that_ran(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # The refused repeat's events carried the model's id: a client keying calls by id (the chat's cards, the
    # missed-run replay) showed its arguments, $4000 to ACC-003, as those of the $10 transfer that ran.
    model = HostileModel(
        [
            call_item("c1", "transfer_funds", transfer("ACC-002", "10")),
            call_item("c1", "transfer_funds", transfer("ACC-003", "4000")),
        ]
    )
    driver = RunDriver(InterruptStore(60.0))
    async with host_for(emulator, tmp_path, driver, agent_name) as host, anyio.create_task_group() as tasks:

        def conversation(thread: ThreadRun) -> Conversation:
            return Conversation(model, host.toolbox, host.agent.reference(), thread, stream=True)

        driver.bind(conversation, tasks)
        asked = await _events(driver, run_input("t", "Send Bob $10."))
        interrupt = interrupt_of(asked)
        resume = [{"interruptId": interrupt.id, "status": "resolved", "payload": {"approve": True}}]
        events = [*asked, *await _events(driver, run_input("t", resume=resume))]
        assert await balance(host, "ACC-001") == Decimal("4990.00")

    started = [event.tool_call_id for event in events if event.type == "TOOL_CALL_START"]
    assert len(set(started)) == 2, f"every call has an id of its own in the stream: {started}"
    args = {event.tool_call_id: event.delta for event in events if isinstance(event, ToolCallArgsEvent)}
    results = {event.tool_call_id: json.loads(event.content) for event in events if event.type == "TOOL_CALL_RESULT"}
    assert [result["status"] for result in tool_results(events)] == ["executed", "failed"]
    [ran] = [call_id for call_id, result in results.items() if result["status"] == "executed"]
    assert ran == interrupt.tool_call_id == "c1", "the call that ran keeps the model's id, as its interrupt names it"
    assert json.loads(args[ran])["amount"] == "10"


async def test_a_session_reopened_in_one_threads_run_asks_each_threads_questions_in_that_thread(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # 2025-11-25 questions arrive on the session's own tasks, which took the context of the run that opened the
    # session again: every later question counted as that thread's, so another thread's transfer was asked in its
    # (here ended) run, and could have been approved by its person, never in the thread whose call asked.
    async with (
        web_for(emulator, tmp_path, agent_name, mcp_protocol="legacy") as web,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        [child] = _children()
        os.kill(child, signal.SIGKILL)
        first = await run(client, web.url, run_input("a", "What is the balance of ACC-001?"))
        assert tool_results(first)[0]["status"] == "executed", "the call opened a new session"
        asked = await run(client, web.url, run_input("b", "Transfer $100 from ACC-001 to ACC-002."))
        interrupt = interrupt_of(asked)
        assert interrupt.reason == "approval_required"
        resume = [{"interruptId": interrupt.id, "status": "resolved", "payload": {"approve": True}}]
        done = await run(client, web.url, run_input("b", resume=resume))
        assert tool_results(done)[0]["status"] == "executed"
        assert await balance(web.host, "ACC-001") == Decimal("4900.00")
