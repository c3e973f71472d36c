"""A Server-Sent Events parser for the raw REST path's streamed responses.

Blocks are `event:`/`data:` lines ended by a blank line; `data` may span several lines and
lines starting with `:` are comments. The Responses API sends no `data: [DONE]`, but other
OpenAI-compatible servers do, so it ends the stream instead of failing to parse.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from agent_host.errors import ServiceFailed


async def parse_sse(lines: AsyncIterable[str]) -> AsyncIterator[dict[str, Any]]:
    """Each event's JSON `data`, with `type` defaulted from the `event:` name."""
    name, data = "", []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            continue
        if data:
            payload = "\n".join(data)
            if payload == "[DONE]":
                return
            yield _event(name, payload)
        name, data = "", []
    if data and "\n".join(data) != "[DONE]":
        yield _event(name, "\n".join(data))


def require_event_stream(content_type: str | None, endpoint: str) -> None:
    """A streamed request answered with something else (the whole response as JSON, from a gateway that
    ignores `stream`; a proxy's page) is reported as such, not read as a stream that ended early."""
    if (content_type or "").partition(";")[0].strip().lower() != "text/event-stream":
        raise ServiceFailed(
            f"The Foundry project at {endpoint} answered a streamed request with "
            f"{content_type or 'no content type'}, not an event stream."
        )


def not_json(payload: str) -> ServiceFailed:
    return ServiceFailed(f"The response stream carried an event that is not JSON: {payload[:200]!r}.")


def not_an_object(payload: str) -> ServiceFailed:
    return ServiceFailed(f"The response stream carried a non-object event: {payload[:200]!r}.")


def _event(name: str, payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError:
        raise not_json(payload) from None
    if not isinstance(event, dict):
        raise not_an_object(payload)
    event.setdefault("type", name)
    return event
