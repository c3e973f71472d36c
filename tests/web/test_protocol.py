"""The AG-UI endpoint over raw HTTP + SSE, every event parsed strictly with the protocol's models."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from ag_ui.core import (
    AgentCapabilities,
    RunErrorEvent,
    RunFinishedEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallStartEvent,
)

from agent_host.emulator import Emulator, FaultConfig
from tests.host.helpers import HostileModel, call_item, message_item
from tests.host.test_hostile_model import BrokenStream

from .helpers import run, run_input, strict, text_of, tool_results, types, web_for

pytestmark = pytest.mark.anyio


async def test_a_balance_streams_text_and_tool_events(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        events = await run(client, web.url, run_input("t-1", "What is the balance of ACC-001?"))
        assert types(events)[:5] == [
            "RUN_STARTED",
            "TOOL_CALL_START",
            "TOOL_CALL_ARGS",
            "TOOL_CALL_END",
            "TOOL_CALL_RESULT",
        ]
        assert types(events)[5] == "TEXT_MESSAGE_START" and types(events)[-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
        assert types(events).count("TEXT_MESSAGE_CONTENT") >= 2, "deltas are passed on as they stream"
        start, args = events[1], events[2]
        assert isinstance(start, ToolCallStartEvent) and isinstance(args, ToolCallArgsEvent)
        assert start.tool_call_name == "get_account_balance"
        assert '"ACC-001"' in args.delta
        (result,) = tool_results(events)
        assert result["status"] == "executed" and result["balance"] == "5000.00"
        assert "5,000.00" in text_of(events) or "5000.00" in text_of(events)
        finished = events[-1]
        assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
        assert finished.outcome.type == "success" and finished.thread_id == "t-1"

        # The same thread continues the same Foundry conversation (previous_response_id).
        again = await run(client, web.url, run_input("t-1", "And the balance of ACC-002?"))
        assert tool_results(again)[0]["balance"] == "250.00"
        conversation = web.driver._threads["t-1"].conversation
        assert conversation.previous_response_id is not None

        capabilities = AgentCapabilities.model_validate((await client.get(f"{web.url}/agent/capabilities")).json())
        hitl = capabilities.human_in_the_loop
        assert hitl is not None and hitl.supported and hitl.approvals and hitl.interrupts


async def test_expected_failures_are_run_errors(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with web_for(emulator, tmp_path, agent_name, max_retries=0) as web, httpx2.AsyncClient(timeout=60) as client:
        empty = await run(client, web.url, run_input("t-2"))
        assert types(empty) == ["RUN_STARTED", "RUN_ERROR"]
        assert isinstance(empty[-1], RunErrorEvent) and empty[-1].code == "no_user_message"

        emulator.faults.arm(FaultConfig(server_errors=5, target="responses"))
        failed = await run(client, web.url, run_input("t-2", "What is the balance of ACC-001?"))
        assert types(failed) == ["RUN_STARTED", "RUN_ERROR"]
        assert isinstance(failed[-1], RunErrorEvent) and "500" in failed[-1].message
        emulator.faults.arm(FaultConfig())

        # The thread is free again after a failed run.
        ok = await run(client, web.url, run_input("t-2", "What is the balance of ACC-003?"))
        assert types(ok)[-1] == "RUN_FINISHED"

        invalid = await client.post(f"{web.url}/agent", json={"threadId": "t-2", "secret": "do-not-echo"})
        assert invalid.status_code == 422 and ("runId" in invalid.text or "run_id" in invalid.text)
        assert "do-not-echo" not in invalid.text


async def test_a_quiet_stream_carries_keepalive_comments_and_every_event(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """A model turn or a tool call can be silent for minutes; a proxy cuts a stream that sends nothing for its
    read timeout. The stream sends an SSE comment after each silence, which strict AG-UI parsing skips."""
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        web.driver.keepalive = 0.1
        emulator.faults.arm(FaultConfig(delay=0.5, target="responses"))
        body = run_input("t-quiet", "What is the balance of ACC-001?")
        async with client.stream("POST", f"{web.url}/agent", json=body) as response:
            lines = [line async for line in response.aiter_lines()]
        emulator.faults.arm(FaultConfig())
        assert lines.count(": keepalive") >= 2, lines
        events = [strict(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
        assert types(events)[0] == "RUN_STARTED" and types(events)[-1] == "RUN_FINISHED"
        assert tool_results(events)[0]["balance"] == "5000.00", "nothing was lost to a receive cut short"


async def test_text_that_is_not_unicode_reaches_the_browser_replaced_not_a_broken_stream(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """A lone surrogate (JSON can escape one) from the model, in its text, a call's name or arguments, could not
    be encoded as UTF-8: the event stream broke off mid-run, and the browser saw neither the calls nor the end."""
    lone = "\ud800"
    model = HostileModel(
        [
            message_item(f"Checking{lone}."),
            call_item("call_1", f"get_account_balance{lone}", "{}"),
            call_item("call_2", "get_account_balance", f'{{"account_id": "ACC-001{lone}"}}'),
        ],
        [message_item("Done.")],
    )
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        web.host.transport = model
        events = await run(client, web.url, run_input("t-lone", "What is my balance?"))

    assert types(events)[-1] == "RUN_FINISHED"
    assert text_of(events) == "Checking\ufffd.Done."
    [named, _] = [event for event in events if isinstance(event, ToolCallStartEvent)]
    assert named.tool_call_name == "get_account_balance\ufffd"
    [_, args] = [event for event in events if isinstance(event, ToolCallArgsEvent)]
    assert args.delta == '{"account_id": "ACC-001\ufffd"}'
    assert [result["error"]["code"] for result in tool_results(events)] == ["unknown_tool", "invalid_arguments"]


async def test_a_stream_broken_off_mid_text_ends_its_message_and_the_thread_goes_on(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """A Responses stream that breaks off after some text left the thread's message open: the failed run's stream
    ended without its TEXT_MESSAGE_END, and every later run on the thread failed as an internal error."""
    model = BrokenStream([{"type": "response.output_text.delta", "delta": "Let me", "sequence_number": 0}])
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        web.host.transport = model
        broken = await run(client, web.url, run_input("t-cut", "Hello?"))
        again = await run(client, web.url, run_input("t-cut", "Hello again?"))

    message = ["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END"]
    assert types(broken) == ["RUN_STARTED", *message, "RUN_ERROR"]
    assert isinstance(broken[-1], RunErrorEvent) and broken[-1].code == "ServiceFailed"
    assert types(again) == ["RUN_STARTED", *message, "RUN_FINISHED"]
    assert text_of(again) == "Done."
    started = [event.message_id for event in [*broken, *again] if isinstance(event, TextMessageStartEvent)]
    assert len(set(started)) == 2, "the new reply is a message of its own"
