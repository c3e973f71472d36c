"""Approvals as AG-UI interrupts: a resume answers the MCP server; bad, stale or racing resumes change nothing."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from ag_ui.core import ResumeEntry, RunErrorEvent, ToolCallStartEvent

from agent_host.approvers import Question
from agent_host.emulator import Emulator
from agent_host.mcp_link import McpTarget
from agent_host.settings import McpProtocol, Transport
from agent_host.web.interrupts import InterruptStore, RunRefused
from tests.host.helpers import NO_DESK, balance, ledger_target, settings_for

from .helpers import interrupt_of, run, run_input, text_of, tool_results, types, web_for

pytestmark = pytest.mark.anyio
TRANSFER = "Transfer $100 from ACC-001 to ACC-002."


def resolved(interrupt_id: str, **payload: object) -> list[dict[str, object]]:
    return [{"interruptId": interrupt_id, "status": "resolved", "payload": payload}]


def error_code(events: list) -> str | None:  # type: ignore[type-arg]
    assert types(events) == ["RUN_STARTED", "RUN_ERROR"], types(events)
    assert isinstance(events[-1], RunErrorEvent)
    return events[-1].code


@pytest.mark.parametrize(
    ("transport", "protocol"), [("sdk", "auto"), ("rest", "legacy")], ids=["sdk-2026-07-28", "rest-2025-11-25"]
)
async def test_resumes_answer_the_mcp_server(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, protocol: McpProtocol
) -> None:
    async with (
        web_for(emulator, tmp_path, agent_name, transport=transport, mcp_protocol=protocol) as web,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        asked = await run(client, web.url, run_input("t", TRANSFER))
        assert "TOOL_CALL_RESULT" not in types(asked), "nothing runs before the resume"
        interrupt = interrupt_of(asked)
        started = asked[1]
        assert isinstance(started, ToolCallStartEvent), types(asked)
        assert interrupt.reason == "approval_required" and interrupt.tool_call_id == started.tool_call_id
        assert interrupt.message.startswith("Approval required: transfer_funds\nTransfer $100.00 (USD) from ACC-001")
        assert interrupt.response_schema["required"] == ["approve"]
        assert set(interrupt.response_schema["properties"]) == {"approve", "note"}
        assert interrupt.metadata["reference"].startswith("APR-")
        assert datetime.fromisoformat(interrupt.expires_at) > datetime.now(UTC)

        done = await run(client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True, note="rent")))
        assert types(done)[:2] == ["RUN_STARTED", "TOOL_CALL_RESULT"] and types(done)[-1] == "RUN_FINISHED"
        assert tool_results(done)[0]["status"] == "executed"
        assert tool_results(done)[0]["approval_ref"] == interrupt.metadata["reference"]
        assert "Done: the transfer of 100 from ACC-001 to ACC-002 is complete." in text_of(done)

        again = await run(client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True)))
        assert error_code(again) == "interrupt_answered"

        rejected = interrupt_of(await run(client, web.url, run_input("t", "Transfer $200 from ACC-002 to ACC-003.")))
        out = await run(client, web.url, run_input("t", resume=resolved(rejected.id, approve=False, note="no")))
        assert tool_results(out)[0]["status"] == "rejected"

        cancelled = interrupt_of(await run(client, web.url, run_input("t", "Transfer $5 from ACC-001 to ACC-003.")))
        out = await run(client, web.url, run_input("t", resume=[{"interruptId": cancelled.id, "status": "cancelled"}]))
        assert tool_results(out)[0]["status"] == "cancelled"

        amounts = [await balance(web.host, account) for account in ("ACC-001", "ACC-002", "ACC-003")]
        assert amounts == [Decimal("4900.00"), Decimal("350.00"), Decimal("120.00")]


async def test_bad_stale_and_racing_resumes_change_nothing(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        interrupt = interrupt_of(await run(client, web.url, run_input("t", TRANSFER)))

        for payload in ({"approve": "yes"}, {"approve": True, "amount": "1000000"}, {"note": "no decision"}):
            wrong = await run(client, web.url, run_input("t", resume=resolved(interrupt.id, **payload)))
            assert error_code(wrong) == "invalid_payload"
            assert "1000000" not in wrong[-1].message  # type: ignore[union-attr]
        assert error_code(await run(client, web.url, run_input("t", resume=resolved("approval-x", approve=True)))) == (
            "unknown_interrupt"
        )
        other = await run(client, web.url, run_input("other-thread", resume=resolved(interrupt.id, approve=True)))
        assert error_code(other) == "unknown_interrupt"
        waiting = await run(client, web.url, run_input("t", "What is the balance of ACC-001?"))
        assert interrupt_of(waiting).id == interrupt.id, "a new run waits for the open question, not run"
        assert "TOOL_CALL_RESULT" not in types(waiting)
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")

        # Two resumes of the same interrupt at once: exactly one continues the run.
        results: list[list] = []  # type: ignore[type-arg]

        async def resume() -> None:
            results.append(await run(client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True))))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(resume)
            tasks.start_soon(resume)
        finished = [events for events in results if types(events)[-1] == "RUN_FINISHED"]
        refused = [events for events in results if types(events)[-1] == "RUN_ERROR"]
        assert len(finished) == 1 and len(refused) == 1 and error_code(refused[0]) == "interrupt_answered"
        assert await balance(web.host, "ACC-001") == Decimal("4900.00")

        # Two new runs at once on a fresh thread: one runs, the other is refused.
        results.clear()

        async def ask() -> None:
            results.append(await run(client, web.url, run_input("fresh", "What is the balance of ACC-002?")))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ask)
            tasks.start_soon(ask)
        assert sorted(types(events)[-1] for events in results) == ["RUN_ERROR", "RUN_FINISHED"]


async def test_a_client_that_disconnects_leaves_nothing_executed(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    async with web_for(emulator, tmp_path, agent_name, window=2.0) as web, httpx2.AsyncClient(timeout=60) as client:
        async with client.stream("POST", f"{web.url}/agent", json=run_input("t", TRANSFER)) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    assert json.loads(line.removeprefix("data: "))["type"] == "RUN_STARTED"
                    break  # the client goes away mid-run
        thread = web.driver._threads["t"]
        with anyio.fail_after(30):
            while thread.pending is None:
                await anyio.sleep(0.05)
            pending = thread.pending
            while thread.active:
                await anyio.sleep(0.05)
        assert pending.state == "expired"
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")

        late = await run(client, web.url, run_input("t", resume=resolved(pending.id, approve=True)))
        assert error_code(late) == "interrupt_expired"
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")
        after = await run(client, web.url, run_input("t", "What is the balance of ACC-001?"))
        assert types(after)[-1] == "RUN_FINISHED"


def _short_server(emulator: Emulator, tmp_path: Path, agent_name: str, **settings: Any) -> McpTarget:
    """The ledger's MCP server giving a human only 2 s to approve."""
    target = ledger_target(settings_for(emulator, agent_name, **settings), tmp_path)
    return replace(target, server_env={**NO_DESK, "BANKGATE_APPROVAL_TIMEOUT": "2"})


@pytest.mark.parametrize(
    ("transport", "protocol"), [("sdk", "auto"), ("rest", "legacy")], ids=["sdk-2026-07-28", "rest-2025-11-25"]
)
async def test_an_interrupt_expires_when_the_server_stops_waiting(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, protocol: McpProtocol
) -> None:
    settings: dict[str, Any] = {"transport": transport, "mcp_protocol": protocol, "approval_timeout": 2.0}
    target = _short_server(emulator, tmp_path, agent_name, **settings)
    async with (
        web_for(emulator, tmp_path, agent_name, window=60.0, target=target, **settings) as web,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        interrupt = interrupt_of(await run(client, web.url, run_input("t", TRANSFER)))
        left = (datetime.fromisoformat(interrupt.expires_at) - datetime.now(UTC)).total_seconds()
        assert left <= 2.0, f"the card counts down {left:.0f} s; the server waits 2 s"
        await anyio.sleep(3.5)
        late = await run(client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True)))
        assert error_code(late) == "interrupt_expired"
        after = await run(client, web.url, run_input("t", "What is the balance of ACC-001?"))
        assert types(after)[-1] == "RUN_FINISHED", "the thread is free again"
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")


async def test_an_interrupt_whose_call_returned_cannot_be_answered(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # A remote server with a shorter approval timeout than the host assumes (300 s): on 2025-11-25 it
    # gives up on its question and the call returns, while the host's interrupt still looks open.
    settings = {"transport": "rest", "mcp_protocol": "legacy"}
    target = _short_server(emulator, tmp_path, agent_name, **settings)
    async with (
        web_for(emulator, tmp_path, agent_name, window=60.0, target=target, **settings) as web,
        httpx2.AsyncClient(timeout=60) as client,
    ):
        stale = interrupt_of(await run(client, web.url, run_input("t", TRANSFER)))
        with anyio.fail_after(30):
            while web.driver._threads["t"].active:
                await anyio.sleep(0.05)
        fresh = interrupt_of(await run(client, web.url, run_input("t", "Transfer $5 from ACC-001 to ACC-003.")))
        late = await run(client, web.url, run_input("t", resume=resolved(stale.id, approve=True)))
        assert error_code(late) == "interrupt_expired", "an answer nobody waits for is not accepted"
        # The fresh run's events are still its own resume's (its server deadline may pass meanwhile).
        done = await run(client, web.url, run_input("t", resume=resolved(fresh.id, approve=False)))
        assert types(done)[-1] == "RUN_FINISHED" and tool_results(done)[0]["status"] in ("rejected", "expired")
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")


async def test_interrupts_of_runs_nobody_resumed_are_forgotten_a_window_past_their_deadline() -> None:
    """2,000 questions put to web clients that vanished (each a thread of its own): a window past their deadline a
    new interrupt finds them gone, and a resume of one is refused as unknown."""
    window = 0.2
    store = InterruptStore(window)
    asked = Question("Approve?", (), deadline=time.time() + window)
    stale = [store.open(f"thread-{n}", asked, f"call-{n}") for n in range(2000)]
    await anyio.sleep(2.5 * window)
    store.open("thread-new", replace(asked, deadline=time.time() + 60), "call-new")
    assert len(store._pending) == 1
    with pytest.raises(RunRefused, match="no open interrupt"):
        store.find("thread-0", ResumeEntry(interrupt_id=stale[0].id, status="resolved", payload={"approve": True}))


async def test_a_mistyped_confirmation_is_refused_and_the_interrupt_stays_open(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # The console asks again until the value is typed exactly; a web resume must not turn a typo into a rejection.
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        interrupt = interrupt_of(await run(client, web.url, run_input("t", "Close ACC-003 and sweep to ACC-001.")))
        assert interrupt.metadata["confirm"] == "ACC-003"
        for typo in ("ACC-03", "acc-003", "ACC-003 ", ""):
            wrong = await run(
                client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True, confirmation=typo))
            )
            assert error_code(wrong) == "invalid_payload"
            assert "confirmation" in wrong[-1].message and "ACC-003" in wrong[-1].message  # type: ignore[union-attr]
        done = await run(
            client, web.url, run_input("t", resume=resolved(interrupt.id, approve=True, confirmation="ACC-003"))
        )
        assert tool_results(done)[0]["status"] == "executed"
        assert await balance(web.host, "ACC-001") == Decimal("5120.00")


async def test_a_body_giving_a_key_twice_is_refused(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    # One reader (a proxy, a log, the person's own client) may take the first `approve`, the host the last.
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        interrupt = interrupt_of(await run(client, web.url, run_input("t", TRANSFER)))
        body = json.dumps(run_input("t", resume=resolved(interrupt.id, approve=False)))
        twice = body.replace('"approve": false', '"approve": false, "approve": true')
        assert twice != body
        refused = await client.post(f"{web.url}/agent", content=twice, headers={"Content-Type": "application/json"})
        assert refused.status_code == 422 and "'approve' more than once" in refused.json()["error"], refused.text
        assert web.driver._threads["t"].pending is not None and web.driver._threads["t"].pending.state == "pending"
        out = await run(client, web.url, run_input("t", resume=resolved(interrupt.id, approve=False)))
        assert tool_results(out)[0]["status"] == "rejected"
        assert await balance(web.host, "ACC-001") == Decimal("5000.00")


async def test_a_client_that_lost_its_stream_gets_the_open_interrupt_again(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # Before, a new run on the thread was refused `thread_busy` until the interrupt the client never saw expired.
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        async with client.stream("POST", f"{web.url}/agent", json=run_input("t", TRANSFER)) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break  # the connection drops after RUN_STARTED
        thread = web.driver._threads["t"]
        with anyio.fail_after(30):
            while thread.pending is None:
                await anyio.sleep(0.05)
        back = await run(client, web.url, run_input("t", "Hello again?"))
        assert "TOOL_CALL_START" in types(back), "the events the client missed come first"
        assert interrupt_of(back).id == thread.pending.id
        assert any(e.type == "CUSTOM" and "was not sent" in e.value for e in back)  # type: ignore[union-attr]
        again = await run(client, web.url, run_input("t", "Hello?"))
        assert types(again)[-1] == "RUN_FINISHED" and interrupt_of(again).id == thread.pending.id
        done = await run(client, web.url, run_input("t", resume=resolved(interrupt_of(again).id, approve=True)))
        assert tool_results(done)[0]["status"] == "executed" and types(done)[-1] == "RUN_FINISHED"
        assert await balance(web.host, "ACC-001") == Decimal("4900.00")
