"""What a thread's client did not receive of its runs, delivered at the start of its next run.

A client whose stream drops (a network change, a proxy, a closed laptop) is not there when a run goes on:
an approved transfer executes, the model replies. The host cannot know what a cut stream delivered, so every
event of a stream that did not deliver its run's end (`RUN_FINISHED` or `RUN_ERROR`) counts as missed, with
those no stream read. The next run on the thread starts with them between two markers (`bankgate.missed.begin`,
whose value says how many runs they are and how many more were not kept, and `bankgate.missed.end`), before
its own. Each tool call and message is sent whole (start, arguments or text, end, result), so the events stay
valid AG-UI in the new run whichever part of them the cut stream had read.

At most `MAX_MISSED_RUNS` runs are kept per thread: a client that keeps losing its streams is shown the most
recent ones and told how many earlier ones are not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from agent_host.foundry.function_tools import FunctionCall

MAX_MISSED_RUNS = 3
"""Runs whose missed events a thread keeps for its client; past it, the oldest are counted, not kept."""

_TOOL_EVENTS = ToolCallStartEvent | ToolCallArgsEvent | ToolCallEndEvent | ToolCallResultEvent
_TEXT_EVENTS = TextMessageStartEvent | TextMessageContentEvent | TextMessageEndEvent


@dataclass(frozen=True)
class Missed:
    """The missed events of earlier runs, oldest first, and how many runs' were not kept."""

    runs: tuple[tuple[BaseEvent, ...], ...]
    forgotten: int = 0

    def events(self) -> Iterator[BaseEvent]:
        """The runs' events between the two markers."""
        yield CustomEvent(name="bankgate.missed.begin", value={"runs": len(self.runs), "forgotten": self.forgotten})
        for run in self.runs:
            yield from run
        yield CustomEvent(name="bankgate.missed.end", value={})


@dataclass
class RunRecord:
    """The calls and texts of a thread's current run, so that a part of one is replayed whole."""

    calls: dict[str, FunctionCall] = field(default_factory=dict)
    texts: dict[str, list[str]] = field(default_factory=dict)

    def whole(self, events: Iterable[BaseEvent]) -> tuple[BaseEvent, ...]:
        """`events` with each tool call and message they touch given whole, where it first appears; results and
        other events as they are."""
        out: list[BaseEvent] = []
        placed: set[str] = set()
        for event in events:
            if isinstance(event, _TOOL_EVENTS):
                if event.tool_call_id not in placed:
                    placed.add(event.tool_call_id)
                    out.extend(self._call(event.tool_call_id))
                if isinstance(event, ToolCallResultEvent):
                    out.append(event)
            elif isinstance(event, _TEXT_EVENTS):
                if event.message_id not in placed:
                    placed.add(event.message_id)
                    out.extend(self._message(event.message_id))
            else:
                out.append(event)
        return tuple(out)

    def _call(self, call_id: str) -> list[BaseEvent]:
        call = self.calls.get(call_id)
        if call is None:  # never recorded: its result alone is still valid AG-UI
            return []
        args = [ToolCallArgsEvent(tool_call_id=call_id, delta=call.arguments)] if call.arguments else []
        return [
            ToolCallStartEvent(tool_call_id=call_id, tool_call_name=call.name),
            *args,
            ToolCallEndEvent(tool_call_id=call_id),
        ]

    def _message(self, message_id: str) -> list[BaseEvent]:
        text = "".join(self.texts.get(message_id, []))
        content = [TextMessageContentEvent(message_id=message_id, delta=text)] if text else []
        return [
            TextMessageStartEvent(message_id=message_id, role="assistant"),
            *content,
            TextMessageEndEvent(message_id=message_id),
        ]


def carried(items: Iterable[BaseEvent | Missed], record: RunRecord, keep: int = MAX_MISSED_RUNS) -> Missed | None:
    """What the client missed: the earlier runs of the `Missed` among `items`, then the run the other items (its
    record's) belong to; the `keep` most recent runs, the others counted. `None` when it missed nothing."""
    runs: list[tuple[BaseEvent, ...]] = []
    forgotten = 0
    own: list[BaseEvent] = []
    for item in items:
        if isinstance(item, Missed):
            runs.extend(item.runs)
            forgotten += item.forgotten
        else:
            own.append(item)
    if whole := record.whole(own):
        runs.append(whole)
    if not runs and not forgotten:
        return None
    past = max(0, len(runs) - keep)
    return Missed(tuple(runs[past:]), forgotten + past)
