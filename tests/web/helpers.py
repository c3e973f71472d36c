"""A web front end on a fresh ledger, and an AG-UI client over raw HTTP + SSE that parses strictly."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from ag_ui.core import Event, EventType, RunFinishedEvent, ToolCallResultEvent
from pydantic import BaseModel, TypeAdapter

from agent_host.emulator import Emulator
from agent_host.host import Host
from agent_host.mcp_link import McpTarget
from agent_host.web.interrupts import InterruptStore
from agent_host.web.runs import RunDriver
from agent_host.web.server import WebOptions, running_web
from tests.host.helpers import host_for

EVENT = TypeAdapter(Event)


@dataclass
class Web:
    url: str
    host: Host
    driver: RunDriver


@asynccontextmanager
async def web_for(
    emulator: Emulator,
    tmp_path: Path,
    agent: str,
    *,
    window: float = 60.0,
    token: str | None = None,
    target: McpTarget | None = None,
    **settings: Any,
) -> AsyncIterator[Web]:
    driver = RunDriver(InterruptStore(window))
    async with (
        host_for(emulator, tmp_path, driver, agent, target, **settings) as host,
        running_web(host, driver, WebOptions(port=0, token=token)) as web,
    ):
        yield Web(web.url, host, driver)


def strict(payload: str) -> Event:
    """One SSE payload as a protocol event; fields the models do not define fail the test."""
    event = EVENT.validate_json(payload)
    _no_extras(event)
    return event


def _no_extras(value: Any) -> None:
    if isinstance(value, BaseModel):
        assert not value.model_extra, f"fields outside the protocol: {sorted(value.model_extra)}"
        for name in type(value).model_fields:
            _no_extras(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            _no_extras(item)


def run_input(thread: str, text: str | None = None, *, resume: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    messages = [{"id": f"m-{uuid.uuid4()}", "role": "user", "content": text}] if text is not None else []
    body: dict[str, Any] = {
        "threadId": thread,
        "runId": f"run-{uuid.uuid4()}",
        "messages": messages,
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
    }
    if resume is not None:
        body["resume"] = resume
    return body


async def run(client: httpx2.AsyncClient, url: str, body: dict[str, Any], **headers: str) -> list[Event]:
    """POST one run and read its whole event stream."""
    events: list[Event] = []
    async with client.stream("POST", f"{url}/agent", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(strict(line.removeprefix("data: ")))
    return events


def types(events: list[Event]) -> list[str]:
    return [event.type.value for event in events]


def interrupt_of(events: list[Event]) -> Any:
    finished = events[-1]
    assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None, types(events)
    assert finished.outcome.type == "interrupt", finished.outcome
    (interrupt,) = finished.outcome.interrupts  # type: ignore[union-attr]
    return interrupt


def tool_results(events: list[Event]) -> list[dict[str, Any]]:
    results = []
    for event in events:
        if event.type == EventType.TOOL_CALL_RESULT:
            assert isinstance(event, ToolCallResultEvent) and isinstance(event.content, str), event
            results.append(json.loads(event.content))
    return results


def text_of(events: list[Event]) -> str:
    return "".join(event.delta for event in events if event.type == EventType.TEXT_MESSAGE_CONTENT)  # type: ignore[union-attr]
