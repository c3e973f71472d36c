"""A model turn reduced to what the loop needs, from a whole response or from its stream of events.

Both wire paths hand over plain JSON (the SDK's objects are dumped to dicts), so a response is read,
and a stream assembled, in one place: text deltas are passed on as they arrive (they are for display
only), the calls come from the final `response.completed` output (completed by what only the item
events carried), and every event type is counted. See docs/foundry-wire-notes.md for the shapes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent_host.errors import ServiceFailed
from agent_host.foundry.event_order import EventOrder
from agent_host.foundry.function_tools import FunctionCall
from agent_host.terminal import one_line


@dataclass(frozen=True)
class Reply:
    """What the loop needs from one response: its id (to continue from), text and function calls."""

    response_id: str
    text: str
    calls: tuple[FunctionCall, ...]
    events: Counter[str] = field(default_factory=Counter)
    """Event types seen, when the reply was streamed."""


_UNFINISHED = ("in_progress", "incomplete")
"""A function call item's own `status` when the service did not finish it, even in a completed response."""

_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)
"""What reading a response of the wrong shape raises: reported as `ServiceFailed`, which the host shows and
survives (a chat goes on), rather than as a crash."""


def reply_from_response(response: Mapping[str, Any]) -> Reply:
    """The text and function calls of a completed response."""
    try:
        return _reply(response)
    except _MALFORMED as error:
        raise ServiceFailed(f"The service sent a malformed response ({type(error).__name__}: {error}).") from None


def _reply(response: Mapping[str, Any]) -> Reply:
    _check_status(response)
    response_id = response["id"]
    if not isinstance(response_id, str) or not response_id:
        # What the answers to its calls continue from: without it, they cannot be given, so none is run.
        raise ServiceFailed(f"The service sent a response that has no id ({response_id!r}).")
    texts: list[str] = []
    calls: list[FunctionCall] = []
    for item in response.get("output") or []:
        if item.get("type") == "message":
            texts += [part.get("text", "") for part in item.get("content") or [] if part.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            if not item.get("call_id") or not item.get("name"):
                raise ServiceFailed(f"Response {response.get('id')} has a function call without a call_id or name.")
            if item.get("status") in _UNFINISHED:  # its arguments may not be all the model meant to send
                raise ServiceFailed(
                    f"Response {response_id} carried {_named(item)} the service left {item['status']}: nothing of "
                    "the response was run."
                )
            arguments = item.get("arguments") or ""
            if not isinstance(arguments, str):
                raise TypeError("function call arguments must be a JSON string")
            calls.append(FunctionCall(str(item["call_id"]), str(item["name"]), arguments))
    return Reply(response_id, "".join(texts), tuple(calls))


async def assemble_stream(events: AsyncIterable[Mapping[str, Any]], on_text: Callable[[str], None]) -> Reply:
    """Consume a streamed response: `on_text` gets each text delta; the reply is the final output.

    `response.completed` carries the whole response, which is the source of truth, and ends the reading
    (whether or not the connection closes after it). The service may
    leave its `output` empty, or send a call only as `response.output_item.done` or only its
    arguments in `response.function_call_arguments.done`, so the output items are also rebuilt from
    the events, keyed by `output_index` (a call item's `id` is optional), and complete the final
    output: calls it lacks are added, empty arguments filled (all items are used when it is empty).
    A call taken from the events must have been finished there (`.done` or `output_item.done`): deltas alone
    may be cut short or repeated, so such a call fails the response rather than run on them. An event repeated
    under its `sequence_number` is read once; a call whose arguments only its deltas carry fails the response
    when the stream's events were out of step (`EventOrder`), and so does one finished with two different ones.
    """
    tally: Counter[str] = Counter()
    text: list[str] = []
    order = EventOrder()
    streamed = _StreamedItems()
    final: Mapping[str, Any] | None = None
    async for event in events:
        if not order.admit(event):
            continue
        kind = str(event.get("type"))
        tally[kind] += 1
        delta: str | None = None
        try:
            if kind in ("response.completed", "response.failed", "response.incomplete"):
                _check_status(event["response"])
                if kind != "response.completed":  # the event ends it so, whatever (if anything) its status says
                    _check_status({**event["response"], "status": kind.removeprefix("response.")})
                final = event["response"]
            elif kind == "error":
                raise ServiceFailed(f"The response stream reported an error: {event.get('message') or event}.")
            elif kind == "response.output_text.delta":
                delta = event["delta"]
                if not isinstance(delta, str):
                    raise TypeError("a text delta must be a string")
            else:
                streamed.note(kind, event)
        except _MALFORMED as error:
            raise ServiceFailed(f"The response stream carried a malformed {kind} event ({error}).") from None
        if delta is not None:
            text.append(delta)
            on_text(delta)
        if final is not None:  # the last event: a stream held open after it would only run into the read timeout
            break
    if final is None:
        raise ServiceFailed("The response stream ended before response.completed.")
    try:
        output = streamed.merged_into(final.get("output") or [], order.fault)
    except _MALFORMED as error:
        raise ServiceFailed(f"The response stream described its output items inconsistently ({error}).") from None
    reply = reply_from_response({**final, "output": output})
    return Reply(reply.response_id, reply.text or "".join(text), reply.calls, tally)


class _StreamedItems:
    """Output items as the stream's item events describe them, by `output_index`."""

    def __init__(self) -> None:
        self._items: dict[int, dict[str, Any]] = {}
        self._deltas: dict[int, list[str]] = {}
        self._finished: set[int] = set()
        """Indexes whose item the stream finished (`output_item.done`, `function_call_arguments.done`)."""
        self._finals: dict[int, set[str]] = {}
        """The whole arguments each finishing event gave, by index: more than one means no one is known right."""
        self._indexes: dict[str, int] = {}
        """`output_index` by item id, for events that carry only `item_id`."""

    def note(self, kind: str, event: Mapping[str, Any]) -> None:
        if kind in ("response.output_item.added", "response.output_item.done"):
            index = int(event["output_index"])
            known = self._items.get(index, {})
            item = {key: value or known.get(key) for key, value in event["item"].items()}
            self._items[index] = {**known, **item}
            if item.get("id"):
                self._indexes[str(item["id"])] = index
            if kind == "response.output_item.done":
                self._finish(index, item.get("arguments"))
        elif kind == "response.function_call_arguments.delta":
            self._deltas.setdefault(self._index(event), []).append(event["delta"])
        elif kind == "response.function_call_arguments.done":
            index = self._index(event)
            item = self._items.setdefault(index, {"type": "function_call"})
            item["arguments"] = event["arguments"]
            if event.get("name") and not item.get("name"):
                item["name"] = event["name"]
            self._finish(index, event["arguments"])

    def _finish(self, index: int, arguments: object) -> None:
        self._finished.add(index)
        if arguments:
            self._finals.setdefault(index, set()).add(str(arguments))

    def _index(self, event: Mapping[str, Any]) -> int:
        index = event.get("output_index")
        return int(index) if index is not None else self._indexes[str(event.get("item_id"))]

    def merged_into(self, final: Sequence[Mapping[str, Any]], out_of_step: str | None) -> list[Mapping[str, Any]]:
        """`final` (authoritative) plus what only the events carried: calls it lacks, or all items if empty.

        A streamed call's arguments come from its item, else its `.done` event, else its deltas, which are
        used only when the stream was in step (`out_of_step` says how it was not); a streamed call is read
        only where it is used, so one the final output carries whole need not have been finished.
        """
        if not final:
            return [self._item(index, out_of_step) for index in sorted(self._items)]
        calls = {
            item.get("call_id"): index for index, item in self._items.items() if item.get("type") == "function_call"
        }
        merged = [
            {**item, "arguments": self._item(calls[item.get("call_id")], out_of_step).get("arguments")}
            if item.get("type") == "function_call" and not item.get("arguments") and item.get("call_id") in calls
            else item
            for item in final
        ]
        known = {item.get("call_id") for item in final if item.get("type") == "function_call"}
        return merged + [self._item(index, out_of_step) for call_id, index in calls.items() if call_id not in known]

    def _item(self, index: int, out_of_step: str | None) -> dict[str, Any]:
        item = dict(self._items[index])
        if item.get("type") != "function_call":
            return item
        call = _named(item)
        if index not in self._finished:
            raise ServiceFailed(f"The response stream never finished the arguments of {call}: nothing was run.")
        if len(self._finals.get(index, ())) > 1:
            raise ServiceFailed(
                f"The response stream sent two different arguments for {call} (function_call_arguments.done and "
                "output_item.done disagree): nothing was run."
            )
        if not item.get("arguments"):
            if out_of_step is not None:
                raise ServiceFailed(
                    f"The response stream's events were out of step ({out_of_step}), so the arguments of {call}, "
                    "which only its deltas carried, are not known: nothing was run."
                )
            item["arguments"] = "".join(self._deltas.get(index, []))
        return item


def _named(item: Mapping[str, Any]) -> str:
    """`function call <call_id> (<name>)` for an error message, one line (`one_line`): the name is the model's, which
    would otherwise begin lines of its own under the host's."""
    named = f"{item.get('call_id')} ({item.get('name')})"
    return f"function call {one_line(named)}"


def _check_status(response: Mapping[str, Any]) -> None:
    status = response.get("status")
    if status in ("in_progress", "queued"):  # its calls may change yet, and its id cannot be continued from
        raise ServiceFailed(
            f"Response {response.get('id')} is still {status}: the service answered before it was done."
        )
    if status in ("failed", "incomplete", "cancelled"):
        error = response.get("error") or response.get("incomplete_details") or {}
        reason = error.get("message") or error.get("reason") or "no reason given"
        raise ServiceFailed(f"Response {response.get('id')} ended {status}: {reason}.")
