"""Server-sent events for a streamed response, in the order and shapes the service emits them.

The response is computed first and then replayed as events: text in several
`response.output_text.delta` chunks, function-call arguments in several
`response.function_call_arguments.delta` chunks, `sequence_number` from 0, and no `[DONE]`.
A `.faults.WireShape` other than `canonical` replays function calls in one of the other
legal shapes the service has been seen to send (see docs/foundry-wire-notes.md), so a client that
trusts only one shape fails against the emulator too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from agent_host.emulator.faults import WireShape
from agent_host.emulator.items import FunctionCall, function_call_item, message_item, output_text_part

_WORDS_PER_DELTA = 3
_CHARS_PER_ARGUMENTS_DELTA = 10


def response_events(response: Mapping[str, Any], shape: WireShape = "canonical") -> list[dict[str, Any]]:
    """The full event sequence for a completed `response`, its function calls in `shape`."""
    pending = {**response, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
    ]
    output = list(enumerate(response["output"]))
    calls = [(index, item) for index, item in output if item["type"] == "function_call"]
    for index, item in output:
        if item["type"] == "message":
            events += _message_events(index, item)
        elif shape == "interleaved_calls" and len(calls) > 1:
            if (index, item) == calls[0]:
                events += _interleaved_call_events(calls)
        elif shape == "calls_in_item_done_only":
            events.append({"type": "response.output_item.done", "output_index": index, "item": dict(item)})
        elif shape != "calls_in_completed_only":
            events += _call_events(index, item, deltas=shape != "arguments_in_done_only")
    final = dict(response)
    if shape == "calls_in_item_done_only":
        final["output"] = [item for item in response["output"] if item["type"] != "function_call"]
    events.append({"type": "response.completed", "response": final})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def with_call_ids(response: Mapping[str, Any], ids: bool) -> dict[str, Any]:
    """`response` as sent, its function-call items without `id` unless `ids` (the field is optional)."""
    if ids:
        return dict(response)
    output = [
        {key: value for key, value in item.items() if key != "id"} if item["type"] == "function_call" else item
        for item in response["output"]
    ]
    return {**response, "output": output}


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One SSE block: `event: <type>` and `data: <json>`."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _message_events(index: int, item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    text = item["content"][0]["text"]
    where = {"item_id": item["id"], "output_index": index}
    part = {**where, "content_index": 0}
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": message_item(item["id"], "", "in_progress"),
    }
    yield {"type": "response.content_part.added", **part, "part": output_text_part("")}
    for delta in _text_deltas(text):
        yield {"type": "response.output_text.delta", **part, "delta": delta, "logprobs": []}
    yield {"type": "response.output_text.done", **part, "text": text, "logprobs": []}
    yield {"type": "response.content_part.done", **part, "part": output_text_part(text)}
    yield {"type": "response.output_item.done", "output_index": index, "item": dict(item)}


def _call_events(index: int, item: Mapping[str, Any], *, deltas: bool = True) -> Iterator[dict[str, Any]]:
    yield _call_added(index, item)
    if deltas:
        for delta in _argument_deltas(item["arguments"]):
            yield {"type": "response.function_call_arguments.delta", **_where(index, item), "delta": delta}
    yield from _call_done(index, item)


def _interleaved_call_events(calls: list[tuple[int, Mapping[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Several calls streamed at once: all added, their argument deltas taken in turns, then all done."""
    for index, item in calls:
        yield _call_added(index, item)
    chunks = {index: _argument_deltas(item["arguments"]) for index, item in calls}
    for turn in range(max(len(deltas) for deltas in chunks.values())):
        for index, item in calls:
            if turn < len(chunks[index]):
                yield {
                    "type": "response.function_call_arguments.delta",
                    **_where(index, item),
                    "delta": chunks[index][turn],
                }
    for index, item in calls:
        yield from _call_done(index, item)


def _call_added(index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    call = FunctionCall(item["call_id"], item["name"], item["arguments"])
    added = function_call_item(item.get("id"), call, "in_progress")
    return {"type": "response.output_item.added", "output_index": index, "item": added}


def _call_done(index: int, item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    where = _where(index, item)
    yield {
        "type": "response.function_call_arguments.done",
        **where,
        "name": item["name"],
        "arguments": item["arguments"],
    }
    yield {"type": "response.output_item.done", "output_index": index, "item": dict(item)}


def _where(index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    """An argument event's reference to its item; a call item without an `id` leaves `item_id` empty."""
    return {"item_id": item.get("id") or "", "output_index": index}


def _argument_deltas(arguments: str) -> list[str]:
    step = _CHARS_PER_ARGUMENTS_DELTA
    return [arguments[start : start + step] for start in range(0, len(arguments), step)]


def _text_deltas(text: str) -> list[str]:
    """Consecutive chunks of a few words each (whitespace kept) that concatenate back to `text`."""
    words = re.findall(r"\s*\S+", text)
    chunks = ["".join(words[i : i + _WORDS_PER_DELTA]) for i in range(0, len(words), _WORDS_PER_DELTA)]
    rest = text[len("".join(chunks)) :]
    if chunks:
        chunks[-1] += rest
    return chunks or [text]
