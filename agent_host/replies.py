"""A model turn reduced to what the loop needs, from a whole response or from its stream of events.

Both wire paths hand over plain JSON (the SDK's objects are dumped to dicts), so a response is read,
and a stream assembled, in one place: text deltas are passed on as they arrive, function calls are
built from their argument deltas, and every event type is counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ServiceFailed
from .toolbox import FunctionCall


@dataclass(frozen=True)
class Reply:
    """What the loop needs from one response: its id (to continue from), text and function calls."""

    response_id: str
    text: str
    calls: tuple[FunctionCall, ...]
    events: Counter[str] = field(default_factory=Counter)
    """Event types seen, when the reply was streamed."""


def reply_from_response(response: Mapping[str, Any]) -> Reply:
    """The text and function calls of a completed response."""
    _check_status(response)
    texts: list[str] = []
    calls: list[FunctionCall] = []
    for item in response.get("output") or []:
        if item.get("type") == "message":
            texts += [part.get("text", "") for part in item.get("content") or [] if part.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            calls.append(FunctionCall(item["call_id"], item["name"], item.get("arguments") or ""))
    return Reply(str(response["id"]), "".join(texts), tuple(calls))


async def assemble_stream(events: AsyncIterable[Mapping[str, Any]], on_text: Callable[[str], None]) -> Reply:
    """Consume a streamed response: ``on_text`` gets each text delta; calls come from argument deltas."""
    tally: Counter[str] = Counter()
    text: list[str] = []
    calls: dict[str, dict[str, str]] = {}
    arguments: dict[str, list[str]] = {}
    response_id: str | None = None
    async for event in events:
        kind = str(event.get("type"))
        tally[kind] += 1
        if kind in ("response.created", "response.completed", "response.failed", "response.incomplete"):
            response_id = str(event["response"]["id"])
            if kind != "response.created":
                _check_status(event["response"])
        elif kind == "error":
            raise ServiceFailed(f"The response stream reported an error: {event.get('message') or event}.")
        elif kind == "response.output_text.delta":
            text.append(event["delta"])
            on_text(event["delta"])
        elif kind == "response.output_item.added" and event["item"].get("type") == "function_call":
            item = event["item"]
            calls[item["id"]] = {"call_id": item["call_id"], "name": item["name"]}
            arguments[item["id"]] = [item.get("arguments") or ""]
        elif kind == "response.function_call_arguments.delta":
            arguments[event["item_id"]].append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            assembled = "".join(arguments[event["item_id"]])
            if "arguments" in event and event["arguments"] != assembled:
                raise ServiceFailed(f"Function call {event['item_id']}: streamed argument deltas do not add up.")
    if response_id is None or not tally["response.completed"]:
        raise ServiceFailed("The response stream ended before response.completed.")
    assembled_calls = tuple(
        FunctionCall(call["call_id"], call["name"], "".join(arguments[item_id])) for item_id, call in calls.items()
    )
    return Reply(response_id, "".join(text), assembled_calls, tally)


def _check_status(response: Mapping[str, Any]) -> None:
    status = response.get("status")
    if status in ("failed", "incomplete", "cancelled"):
        error = response.get("error") or response.get("incomplete_details") or {}
        reason = error.get("message") or error.get("reason") or "no reason given"
        raise ServiceFailed(f"Response {response.get('id')} ended {status}: {reason}.")
