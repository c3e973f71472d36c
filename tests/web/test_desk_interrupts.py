"""Desk approvals as AG-UI interrupts (raw HTTP + SSE, every event parsed strictly): the interrupt
carries the desk link instead of a form, a resume before the desk decided raises it again, and the
run continues with the decision an approver signed at the desk."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from ag_ui.core import ResumeEntry, RunAgentInput, RunErrorEvent, ToolCallStartEvent

from agent_host.approvers import Question
from agent_host.emulator import Emulator
from agent_host.foundry.function_tools import FunctionCall
from agent_host.mcp_link import ToolResult
from agent_host.settings import McpProtocol, Transport
from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import DESK_GRACE_SECONDS, Item, RunDriver, Suspended, ThreadRun, _current
from tests.host.desk_lab import DeskLab
from tests.host.helpers import balance, settings_for

from .helpers import interrupt_of, run, run_input, text_of, tool_results, types, web_for

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


async def test_resuming_a_held_desk_interrupt_leaves_the_next_calls_interrupt_current() -> None:
    # 2025-11-25: a held desk approval raised again as still pending stays open after its call settles (its
    # resume only says "continue"); the run goes on and the next call's question is the thread's interrupt.
    # Resuming the older one must not make the thread forget the current one: when the current one's call
    # returns without its answer, it is closed, and a resume of it is refused, not reported as applied.
    store = InterruptStore(60.0)
    driver = RunDriver(store)
    thread = driver._threads["t"] = ThreadRun("t")
    thread.sink, thread.source = anyio.create_memory_object_stream[Item](math.inf)
    thread.active = True
    desk = Question("Approve at the desk.", (), url="https://desk.example/desk/approvals/APR-1", elicitation_id="e-1")
    older = store.open("t", desk, "call_1")
    older.link_accepted = True
    form = {"type": "object", "properties": {"approve": {"type": "boolean"}}, "required": ["approve"]}
    current = store.open("t", Question("Approve the second transfer?", (), schema=form), "call_2")
    thread.pending = current
    thread.raised |= {older.id, current.id}  # both raised by the run in progress
    thread.emit(Suspended(current))

    resumed = await _resumed(driver, older.id)
    assert interrupt_of(resumed).id == current.id
    thread.tool_result(FunctionCall("call_2", "transfer_funds", "{}"), ToolResult({"status": "expired"}))
    assert current.state == "expired", "the call returned without the answer: nothing waits for it"
    late = await _resumed(driver, current.id, {"approve": True})
    assert isinstance(late[-1], RunErrorEvent) and late[-1].code == "interrupt_expired"


async def _resumed(driver: RunDriver, interrupt_id: str, payload: object = None) -> list[Any]:
    body = run_input("t", resume=resume(interrupt_id, payload=payload))
    with anyio.fail_after(5):
        return [event async for event in driver.run(RunAgentInput.model_validate(body))]


async def test_a_settled_held_desk_interrupt_does_not_hold_up_the_next_run() -> None:
    # 2025-11-25: a held desk approval raised again stays open after its call settles and the run ends. A new run
    # then runs: the question it would present again waits for nobody (a new run on a thread that waits for an
    # answer gets that interrupt again instead).
    store = InterruptStore(60.0)
    driver = RunDriver(store)
    sent: list[str] = []

    class Conversation:
        async def send(self, text: str) -> None:
            sent.append(text)

    async with anyio.create_task_group() as tasks:
        driver.bind(lambda thread: Conversation(), tasks)  # type: ignore[arg-type,return-value]
        thread = driver._thread("t")
        desk = Question("Approve at the desk.", (), url="https://desk.example/desk/approvals/APR-1", elicitation_id="e")
        held = thread.pending = store.open("t", desk, "call_1")
        held.link_accepted = True
        held.settled.set()
        body = run_input("t", "What is the balance of ACC-001?")
        with anyio.fail_after(5):
            events: list[Any] = [event async for event in driver.run(RunAgentInput.model_validate(body))]
    assert sent == ["What is the balance of ACC-001?"]
    assert types(events) == ["RUN_STARTED", "RUN_FINISHED"] and events[-1].outcome.type == "success"


@pytest.mark.parametrize("forgotten", [False, True], ids=["ended", "thread-forgotten"])
async def test_resuming_a_held_desk_interrupt_after_its_run_ended_finishes_the_stream(forgotten: bool) -> None:
    # Its resume only says "continue" to a finished call: the stream ends RUN_FINISHED, not bare (nor fails, when
    # the thread was forgotten and its id names a new one).
    store = InterruptStore(60.0)
    driver = RunDriver(store)
    thread = driver._threads["t"] = ThreadRun("t")
    thread.sink, thread.source = anyio.create_memory_object_stream[Item](math.inf)
    thread.sink.close()
    if forgotten:
        driver._threads["t"] = ThreadRun("t")
    desk = Question("Approve at the desk.", (), url="https://desk.example/desk/approvals/APR-1", elicitation_id="e")
    held = store.open("t", desk, "call_1")
    held.link_accepted = True
    held.settled.set()
    events = await _resumed(driver, held.id)
    assert types(events) == ["RUN_STARTED", "RUN_FINISHED"] and events[-1].outcome.type == "success"


@pytest.mark.parametrize(
    ("transport", "protocol"), [("sdk", "auto"), ("rest", "legacy")], ids=["sdk-2026-07-28", "rest-2025-11-25"]
)
async def test_a_resume_after_the_deadline_reads_the_outcome_of_a_desk_yes_signed_in_time(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, protocol: McpProtocol
) -> None:
    # A yes signed before the deadline runs when continued within the approval's timeout from the decision (the server
    # holds a 2025-11-25 call and runs it at once; on 2026-07-28 the host's answer at the deadline continues it). The
    # host stopped waiting for the client at the deadline, yet the call ran: a resume then was refused "expired;
    # nothing was executed". It is no answer now, but reads the rest of the run, the call's outcome with it.
    lab = DeskLab.create(tmp_path)
    settings: dict[str, Any] = {"transport": transport, "mcp_protocol": protocol, "approval_timeout": 8.0}
    target = lab.target(settings_for(emulator, agent_name, **settings))
    target = replace(target, server_env={**lab.env, "BANKGATE_APPROVAL_TIMEOUT": "8"})
    async with (
        web_for(emulator, tmp_path, agent_name, target=target, **settings) as web,
        lab.approver() as (desk, passkey),
        httpx2.AsyncClient(timeout=60) as client,
    ):
        interrupt = interrupt_of(await run(client, web.url, run_input("t", "Transfer $100 from ACC-001 to ACC-002.")))
        again = interrupt_of(await run(client, web.url, run_input("t", resume=resume(interrupt.id))))
        assert again.metadata["desk_status"] == "still_pending"
        decided = await desk.decide(interrupt.metadata["reference"], "approved", passkey)
        assert decided.status_code == 200, decided.text
        deadline = datetime.fromisoformat(again.expires_at)
        await anyio.sleep((deadline - datetime.now(UTC)).total_seconds() + 0.5)

        late = await run(client, web.url, run_input("t", resume=resume(interrupt.id)))
        assert types(late)[-1] == "RUN_FINISHED", late[-1]
        assert [result["status"] for result in tool_results(late)] == ["executed"]
        assert await balance(web.host, "ACC-002") == Decimal("350.00")
        twice = await run(client, web.url, run_input("t", resume=resume(interrupt.id)))
        assert isinstance(twice[-1], RunErrorEvent) and twice[-1].code == "interrupt_expired"
        assert "nothing was executed" not in twice[-1].message, "the desk's yes may have run"


async def test_a_desk_interrupt_past_its_deadline_is_not_raised_again() -> None:
    # Nobody can answer it then (the server settles the call by the desk's decision): raised again, it sent the chat's
    # card, already at zero, to check once more, round after round while a 2025-11-25 server held the call.
    store = InterruptStore(60.0)
    driver = RunDriver(store)
    thread = driver._threads["t"] = ThreadRun("t")
    thread.sink, source = anyio.create_memory_object_stream[Item](math.inf)
    thread.active = True
    _current.set(thread)
    url = "https://desk.example/desk/approvals/APR-1"
    asked = store.open("t", Question("Approve at the desk.", (), deadline=time.time() + 0.2, url=url), "call_1")
    asked.resolve(ResumeEntry(interrupt_id=asked.id, status="resolved"))
    await anyio.sleep(0.3)
    with anyio.fail_after(DESK_GRACE_SECONDS + 2):
        again = await driver.answer(Question("Approve at the desk.", (), url=url, repeat=1))  # 2026-07-28
        asked.link_accepted = True
        await driver._watch_desk(thread, asked)  # 2025-11-25: the server still holds the call
    thread.sink.close()
    assert [item async for item in source] == [], "no interrupt was raised"
    assert again.action == "cancel" and again.desk


async def test_continuing_an_earlier_runs_held_desk_interrupt_leaves_the_new_runs_stream_whole() -> None:
    # 2025-11-25: a held desk approval raised again stays open after its call settled and its run ended. Its
    # "continue" then read the thread's current queue, a newer run's: the two streams split that run's events, so
    # its own stream missed text (or its interrupt, or its end) and the old resume showed another run's events.
    store = InterruptStore(60.0)
    driver = RunDriver(store)
    release = anyio.Event()

    class Conversation:
        def __init__(self, thread: ThreadRun) -> None:
            self.thread = thread

        async def send(self, text: str) -> None:
            await release.wait()
            for word in ("one", "two", "three", "four"):
                self.thread.stream_text(f"{word} ")
                await anyio.sleep(0)

    new_run: list[Any] = []
    old_resume: list[Any] = []

    async def read_new_run() -> None:
        body = RunAgentInput.model_validate(run_input("t", "What is the balance of ACC-001?"))
        new_run.extend([event async for event in driver.run(body)])

    async def read_old_resume() -> None:
        old_resume.extend(await _resumed(driver, held.id))

    async with anyio.create_task_group() as tasks:
        driver.bind(Conversation, tasks)  # type: ignore[arg-type]
        thread = driver._thread("t")
        desk = Question("Approve at the desk.", (), url="https://desk.example/desk/approvals/APR-1", elicitation_id="e")
        held = thread.pending = store.open("t", desk, "call_1")
        held.link_accepted = True
        held.settled.set()
        tasks.start_soon(read_new_run)
        with anyio.fail_after(5):
            while not thread.active:
                await anyio.sleep(0.01)
            tasks.start_soon(read_old_resume)  # the old card's "continue", while the new run streams
            await anyio.wait_all_tasks_blocked()  # it reads what it reads (the bug: the new run's queue)
            release.set()
    assert types(old_resume) == ["RUN_STARTED", "RUN_FINISHED"], "the old run is over: its stream has nothing to read"
    assert text_of(new_run) == "one two three four ", types(new_run)
