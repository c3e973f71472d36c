"""Server-sent events for a streamed response, in the order and shapes the service emits them.

The response is computed first and then replayed as events: text in several
``response.output_text.delta`` chunks, function-call arguments in several
``response.function_call_arguments.delta`` chunks, ``sequence_number`` from 0, and no ``[DONE]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from .items import FunctionCall, function_call_item, message_item, output_text_part

_WORDS_PER_DELTA = 3
_CHARS_PER_ARGUMENTS_DELTA = 10


def response_events(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The full event sequence for a completed ``response``."""
    pending = {**response, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": pending},
        {"type": "response.in_progress", "response": pending},
    ]
    for index, item in enumerate(response["output"]):
        events += _message_events(index, item) if item["type"] == "message" else _call_events(index, item)
    events.append({"type": "response.completed", "response": dict(response)})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One SSE block: ``event: <type>`` and ``data: <json>``."""
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


def _call_events(index: int, item: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    arguments = item["arguments"]
    where = {"item_id": item["id"], "output_index": index}
    call = FunctionCall(item["call_id"], item["name"], arguments)
    yield {
        "type": "response.output_item.added",
        "output_index": index,
        "item": function_call_item(item["id"], call, "in_progress"),
    }
    for start in range(0, len(arguments), _CHARS_PER_ARGUMENTS_DELTA):
        delta = arguments[start : start + _CHARS_PER_ARGUMENTS_DELTA]
        yield {"type": "response.function_call_arguments.delta", **where, "delta": delta}
    yield {"type": "response.function_call_arguments.done", **where, "name": item["name"], "arguments": arguments}
    yield {"type": "response.output_item.done", "output_index": index, "item": dict(item)}


def _text_deltas(text: str) -> list[str]:
    """Consecutive chunks of a few words each (whitespace kept) that concatenate back to ``text``."""
    words = re.findall(r"\s*\S+", text)
    chunks = ["".join(words[i : i + _WORDS_PER_DELTA]) for i in range(0, len(words), _WORDS_PER_DELTA)]
    rest = text[len("".join(chunks)) :]
    if chunks:
        chunks[-1] += rest
    return chunks or [text]
