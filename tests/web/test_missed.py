"""What a run did while its client's stream was gone reaches that client at the start of its next run."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import httpx2
import pytest
from ag_ui.core import (
    CustomEvent,
    Event,
    TextMessageContentEvent,
    TextMessageEndEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
)

from agent_host.emulator import Emulator, FaultConfig
from agent_host.foundry.function_tools import FunctionCall
from agent_host.web.missed import MAX_MISSED_RUNS, Missed, RunRecord, carried
from tests.host.helpers import balance

from .helpers import interrupt_of, run, run_input, strict, text_of, tool_results, types, web_for

pytestmark = pytest.mark.anyio
TRANSFER = "Transfer $100 from ACC-001 to ACC-002."
WHOLE_CALL = ["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"]


def missed_section(events: list[Event]) -> tuple[CustomEvent, list[Event], list[Event]]:
    """The begin marker, the events between the markers, and those after the end marker."""
    names = [event.name if isinstance(event, CustomEvent) else None for event in events]
    assert "bankgate.missed.begin" in names and "bankgate.missed.end" in names, types(events)
    begin, end = names.index("bankgate.missed.begin"), names.index("bankgate.missed.end")
    marker = events[begin]
    assert isinstance(marker, CustomEvent)
    return marker, events[begin + 1 : end], events[end + 1 :]


async def cut_after_started(client: httpx2.AsyncClient, url: str, body: dict[str, object]) -> None:
    """POST a run and drop the connection once RUN_STARTED arrived, as a page whose network went away."""
    async with client.stream("POST", f"{url}/agent", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break


async def test_an_approved_transfer_whose_stream_was_cut_is_shown_at_the_next_run(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    # Before, the next run made a new event queue and the transfer's result and the reply were thrown away: the
    # page only said "its outcome is not shown here", and a user may ask for the transfer again.
    async with web_for(emulator, tmp_path, agent_name) as web, httpx2.AsyncClient(timeout=60) as client:
        interrupt = interrupt_of(await run(client, web.url, run_input("t", TRANSFER)))
        emulator.faults.arm(FaultConfig(delay=1.0, target="responses"))  # the reply comes after the cut, always
        resume = [{"interruptId": interrupt.id, "status": "resolved", "payload": {"approve": True}}]
        await cut_after_started(client, web.url, run_input("t", resume=resume))
        thread = web.driver._threads["t"]
        with anyio.fail_after(30):
            while thread.active:
                await anyio.sleep(0.05)
        emulator.faults.arm(FaultConfig())
        assert await balance(web.host, "ACC-001") == Decimal("4900.00")

        back = await run(client, web.url, run_input("t", "What is the balance of ACC-002?"))
        assert types(back)[:6] == ["RUN_STARTED", "CUSTOM", *WHOLE_CALL], "what the client missed comes first"
        marker, missed, now = missed_section(back)
        assert marker.value == {"runs": 1, "forgotten": 0}
        [executed] = tool_results(missed)
        assert executed["status"] == "executed"
        assert executed["message"].startswith("Transferred $100.00 from ACC-001 to ACC-002.")
        assert executed["approval_ref"] == interrupt.metadata["reference"]
        assert "Done: the transfer of 100 from ACC-001 to ACC-002 is complete." in text_of(missed)
        assert tool_results(now)[0]["balance"] == "350.00" and types(now)[-1] == "RUN_FINISHED"

        again = await run(client, web.url, run_input("t", "And the balance of ACC-001?"))
        assert "CUSTOM" not in types(again), "a run delivered whole is not shown again"


def test_a_call_or_message_a_cut_stream_read_in_part_is_replayed_whole() -> None:
    """The cut stream had read the call's start and arguments and the message's first words: replayed alone, the
    rest would be invalid AG-UI in the new run (`TOOL_CALL_END` of a call it never started), so they come whole."""
    record = RunRecord()
    record.calls["c1"] = FunctionCall("c1", "transfer_funds", '{"amount": "40"}')
    record.texts["m1"] = ["Done: ", "the transfer is complete."]
    rest = [
        ToolCallEndEvent(tool_call_id="c1"),
        ToolCallResultEvent(message_id="tool-c1", tool_call_id="c1", content='{"status": "executed"}'),
        TextMessageContentEvent(message_id="m1", delta="the transfer is complete."),
        TextMessageEndEvent(message_id="m1"),
    ]
    missed = carried(rest, record)
    assert missed is not None and len(missed.runs) == 1
    events = [strict(event.model_dump_json(by_alias=True, exclude_none=True)) for event in missed.events()]
    whole_message = ["TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END"]
    assert types(events) == ["CUSTOM", *WHOLE_CALL, *whole_message, "CUSTOM"]
    assert text_of(events) == "Done: the transfer is complete." and tool_results(events) == [{"status": "executed"}]
    assert carried([], record) is None, "nothing missed, nothing shown"


def test_past_the_bound_the_oldest_missed_runs_are_counted_not_kept() -> None:
    warning = [CustomEvent(name="bankgate.warning", value=f"run {n}") for n in range(MAX_MISSED_RUNS + 1)]
    earlier = Missed(tuple((event,) for event in warning[:MAX_MISSED_RUNS]), forgotten=2)
    missed = carried([earlier, warning[-1]], RunRecord())
    assert missed is not None
    assert [run[0] for run in missed.runs] == warning[1:], "the most recent runs, oldest first"
    assert missed.forgotten == 3
    assert next(missed.events()).value == {"runs": MAX_MISSED_RUNS, "forgotten": 3}  # type: ignore[attr-defined]
