"""One Foundry conversation per AG-UI thread, driven in the background and read as protocol events.

A run is the host's own loop (`agent_host.conversation.Conversation`) in a task of its own; what it
does reaches the client as AG-UI events through a per-run queue. When the MCP server asks for
approval, the `RunDriver` (the host's approver) opens an interrupt, ends the client's stream
with the interrupt outcome and keeps the tool call waiting; a resume on any connection answers it
and the next stream continues from the same queue. The loop therefore never learns that it talked
to a browser, and a client that disconnects leaves a run that either finishes or times out alone.

A desk approval (a link to the approval desk instead of a form) suspends the run the same way.
After a `resolved` resume the host completes the MCP round: on 2026-07-28 it calls again, and a
server still waiting for the desk asks again, which raises the same interrupt again; on 2025-11-25
the server holds the call until the desk decides, so when the call has not returned within
`DESK_GRACE_SECONDS` of the resume, the same interrupt is raised again. Never past its deadline: the
server then settles the call by the desk's decision (a yes signed in time may still run), and a
`resolved` resume of the interrupt reads the rest of the run that raised it, with the call's outcome.

A thread runs one run at a time: a new run while one is streaming is refused; while one is suspended
on an interrupt, a new run's message is not sent and its stream ends on that interrupt again (the client
whose stream dropped never saw it). What a client missed of a run whose stream dropped (`missed`) comes first
in its next run's stream, or in the stream that shows it its open interrupt again. The host keeps at most
`MAX_THREADS` threads: past it, a new thread id makes it forget the least recently used thread with no run
active (a run on that id later starts a new conversation); with every thread busy, the new one is refused.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio
import anyio.abc
from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    ResumeEntry,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    UserMessage,
)
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agent_host.approvers import Answer, Question
from agent_host.conversation import Conversation
from agent_host.errors import HostError
from agent_host.foundry.function_tools import FunctionCall
from agent_host.foundry.response_reader import Reply
from agent_host.mcp_link import ToolResult
from agent_host.web.interrupts import InterruptStore, PendingApproval, RunRefused
from agent_host.web.missed import Missed, RunRecord, carried

logger = logging.getLogger(__name__)

MAX_THREADS = 1000
"""How many threads (each a conversation the host remembers) it keeps; a client may name a new thread
id for every run."""
MAX_THREAD_ID = 200
"""Characters of a thread id the host keeps: with `MAX_THREADS`, what a client's ids may take of its memory."""
DESK_GRACE_SECONDS = 3.0
"""How long a resumed desk approval may take to settle before the host says it is still pending
(the server looks for the desk's decision about every second)."""


@dataclass(frozen=True)
class Suspended:
    """The run waits for a resume of `pending`."""

    pending: PendingApproval


@dataclass(frozen=True)
class Ended:
    """The run is over: finished (`error` is `None`) or failed."""

    error: str | None = None
    code: str | None = None


Item = BaseEvent | Suspended | Ended | Missed


@dataclass
class ThreadRun:
    """An AG-UI thread: its conversation and, while a run is active, that run's event queue."""

    thread_id: str
    conversation: Conversation = field(init=False)
    active: bool = False
    calling: str | None = None
    """The `call_id` of the tool call in progress."""
    pending: PendingApproval | None = None
    held: list[PendingApproval] = field(default_factory=list)
    """Desk approvals whose MCP call the server holds open (2025-11-25) until the desk decides."""
    raised: set[str] = field(default_factory=set)
    """The ids of the interrupts the current (or last) run raised: a late desk resume reads only that run."""
    sink: MemoryObjectSendStream[Item] | None = field(default=None, repr=False)
    """Where the active run's events go (unbounded: a run never waits for a reader)."""
    source: MemoryObjectReceiveStream[Item] | None = field(default=None, repr=False)
    """Where the client's stream reads them, across the resumes of one run."""
    taken: list[Item] = field(default_factory=list, repr=False)
    """What streams read from `source` since one last delivered its run's end: a cut stream's, when it is."""
    record: RunRecord = field(default_factory=RunRecord, repr=False)
    shown: set[str] = field(default_factory=set, repr=False)
    """The tool call ids this thread's streams have used: a model may repeat one (the host refuses the repeat)."""
    _message_id: str | None = None
    _call_event_id: str | None = None

    @property
    def waits_for_client(self) -> bool:
        """The run is suspended on an open interrupt (not a held desk approval raised again whose call has settled)."""
        pending = self.pending
        return self.active and pending is not None and pending.state == "pending" and not pending.settled.is_set()

    def emit(self, item: Item) -> None:
        if self.sink is not None:
            self.sink.send_nowait(item)

    # --- TurnObserver: the loop's progress as protocol events -------------------------------------

    def stream_text(self, delta: str) -> None:
        if not delta:
            return
        if self._message_id is None:
            self._message_id = f"msg-{uuid.uuid4()}"
            self.record.texts[self._message_id] = []
            self.emit(TextMessageStartEvent(message_id=self._message_id, role="assistant"))
        self.record.texts[self._message_id].append(delta)
        self.emit(TextMessageContentEvent(message_id=self._message_id, delta=delta))

    def reply(self, reply: Reply, previous_response_id: str | None, streamed: bool) -> None:
        if not streamed:
            self.stream_text(reply.text)
        self.end_message()

    def end_message(self) -> None:
        """End the message being streamed, if any: also one whose response stream broke off, which no reply ends
        (left open, the next run's text went on under its id, absent from that run's record)."""
        if self._message_id is not None:
            self.emit(TextMessageEndEvent(message_id=self._message_id))
            self._message_id = None

    def tool_call(self, call: FunctionCall) -> None:
        self.calling = call.call_id
        event_id = self._call_event_id = self._fresh_id(call.call_id)
        self.record.calls[event_id] = call
        self.emit(ToolCallStartEvent(tool_call_id=event_id, tool_call_name=call.name))
        if call.arguments:
            self.emit(ToolCallArgsEvent(tool_call_id=event_id, delta=call.arguments))
        self.emit(ToolCallEndEvent(tool_call_id=event_id))

    def _fresh_id(self, call_id: str) -> str:
        """`call_id`, or for a repeat an id of its own: under the same id a client (the chat's cards, the missed
        runs' replay) would show the refused repeat's arguments and outcome as those of the call that ran. A call
        that runs is never a repeat (`Conversation` refuses those), so its interrupt's `call_id` names its events."""
        event_id = call_id
        while event_id in self.shown:
            event_id = f"{call_id}-repeat-{uuid.uuid4().hex[:8]}"
        self.shown.add(event_id)
        return event_id

    def tool_result(self, call: FunctionCall, result: ToolResult) -> None:
        self.calling = None
        if self.pending is not None and self.pending.tool_call_id == call.call_id:
            self.close_pending("the tool call returned before the client resumed the run")
        for pending in [pending for pending in self.held if pending.tool_call_id == call.call_id]:
            pending.settled.set()
            self.held.remove(pending)
        content = json.dumps(result.output)
        event_id = self._call_event_id or call.call_id
        self.emit(ToolCallResultEvent(message_id=f"tool-{event_id}", tool_call_id=event_id, content=content))

    def warning(self, text: str) -> None:
        self.emit(CustomEvent(name="bankgate.warning", value=text))

    def delivered(self, end: Item) -> None:
        """A stream delivered `end` (its run's end, or an interrupt): what was read up to it reached the client."""
        for index, item in enumerate(self.taken):
            if item is end:
                del self.taken[: index + 1]
                return

    def missed(self, source: MemoryObjectReceiveStream[Item]) -> Missed | None:
        """What the client may not have received: the reads of streams that did not deliver their end, then what
        no stream read of `source` (whose sink is closed)."""
        items = [*self.taken, *_queued(source)]
        self.taken = []
        return carried(_as_events(items), self.record)

    def close_pending(self, reason: str) -> None:
        """An interrupt the run no longer waits for (the server gave up on its question, the run
        ended) is closed, so a resume can neither report it applied nor read another run's events.
        A held desk approval raised again stays: its resume only says "continue" to a finished call."""
        if self.pending is not None and not self.pending.link_accepted:
            self.pending.close(reason)


KEEPALIVE_SECONDS = 15.0
"""Longest silence on a run's stream: a tool call or a model turn can be quiet for minutes, and a proxy
(nginx's default read timeout is 60 s) would cut a stream that sends nothing."""


class Idle:
    """Nothing happened for the keepalive interval: `app` sends an SSE comment, which AG-UI clients skip."""


IDLE = Idle()

_current: ContextVar[ThreadRun] = ContextVar("agui_thread_run")
"""The thread whose run task is calling a tool (inherited by the 2026-07-28 input-request dispatch)."""


class RunDriver:
    """The runs of every thread, and the host's approver: questions become interrupts."""

    name = "web"

    def __init__(
        self, store: InterruptStore, *, max_threads: int = MAX_THREADS, keepalive: float = KEEPALIVE_SECONDS
    ) -> None:
        self.store = store
        self.max_threads = max_threads
        self.keepalive = keepalive
        self._threads: dict[str, ThreadRun] = {}
        """By last use, the least recent first."""
        self._conversation: Callable[[ThreadRun], Conversation] | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    def bind(self, conversation: Callable[[ThreadRun], Conversation], tasks: anyio.abc.TaskGroup) -> None:
        """Where conversations come from (the host) and where runs live (the server's task group)."""
        self._conversation = conversation
        self._tasks = tasks

    async def run(self, run_input: RunAgentInput) -> AsyncIterator[BaseEvent | Idle]:
        """The events of one AG-UI run: a new request, or a resume of a suspended one; `IDLE` after each
        silence of `keepalive` seconds."""
        started = RunStartedEvent(thread_id=run_input.thread_id, run_id=run_input.run_id)
        yield started
        try:
            thread = self._resume(run_input) if run_input.resume else self._start(run_input)
        except RunRefused as refused:
            yield RunErrorEvent(message=refused.message, code=refused.code)
            return
        async for event in self._drain(thread, run_input):
            yield event

    def _start(self, run_input: RunAgentInput) -> ThreadRun:
        """The thread's new run; a refused one (checked before the thread is made) takes no thread's place."""
        if len(run_input.thread_id) > MAX_THREAD_ID:
            raise RunRefused("invalid_thread_id", f"The threadId is longer than {MAX_THREAD_ID} characters.")
        known = self._threads.get(run_input.thread_id)
        if known is not None and known.waits_for_client:
            return self._waiting(self._thread(known.thread_id))
        text = _last_user_text(run_input)
        if text is None:
            raise RunRefused("no_user_message", "The run input has no user message with text to send.")
        thread = self._thread(run_input.thread_id)
        if thread.active:
            raise RunRefused(
                "thread_busy",
                "This thread already has a run in progress or waiting for approval; resume or wait for it.",
            )
        assert self._tasks is not None, "bind() the driver before running"
        missed = thread.missed(thread.source) if thread.source is not None else None
        thread.record = RunRecord()
        thread.sink, thread.source = anyio.create_memory_object_stream[Item](math.inf)
        if missed is not None:
            thread.emit(missed)
        thread.active = True
        thread.raised.clear()
        self._tasks.start_soon(self._drive, thread, text)
        return thread

    def _waiting(self, thread: ThreadRun) -> ThreadRun:
        """A new run on a thread whose run waits for an answer: the client may never have seen the question (its
        stream dropped), so this run's stream takes what it missed and ends on that interrupt again; a stream still
        reading the old queue ends. The new message is not sent, and the stream says so."""
        assert thread.pending is not None and thread.sink is not None and thread.source is not None
        thread.sink.close()
        missed = thread.missed(thread.source)
        thread.sink, thread.source = anyio.create_memory_object_stream[Item](math.inf)
        if missed is not None:
            thread.emit(missed)
        thread.emit(CustomEvent(name="bankgate.warning", value=_NOT_SENT))
        thread.emit(Suspended(thread.pending))
        return thread

    def _resume(self, run_input: RunAgentInput) -> ThreadRun | None:
        """The thread whose run the resume continues; `None` when the interrupt's run is over (a held desk
        approval's "continue" after its run ended), so that the stream reads nothing, not a newer run's events."""
        thread = self._threads.get(run_input.thread_id)
        entries: list[ResumeEntry] = run_input.resume or []
        if len(entries) != 1:
            raise RunRefused("invalid_resume", "A resume must answer exactly one interrupt.")
        if thread is None:
            raise RunRefused("unknown_interrupt", "The resume names no open interrupt of this thread.")
        entry = entries[0]
        pending = self.store.find(thread.thread_id, entry)
        if pending.id in thread.raised and pending.follow(entry):
            return thread  # past its deadline: the stream reads the rest of the run that raised it
        pending.resolve(entry)
        if thread.pending is pending:  # an older one (a held desk approval's "continue") leaves the current one
            thread.pending = None
        return thread if pending.id in thread.raised else None

    async def _drain(self, thread: ThreadRun | None, run_input: RunAgentInput) -> AsyncIterator[BaseEvent | Idle]:
        """The run's events up to its next interrupt or its end; without a run to read, the stream says it finished."""
        thread_id, run_id = run_input.thread_id, run_input.run_id
        source = thread.source if thread is not None else None
        if thread is not None and source is not None:
            async for item in _with_idles(source, self.keepalive):
                if isinstance(item, Idle):
                    yield item
                    continue
                thread.taken.append(item)
                if isinstance(item, Suspended | Ended):
                    yield _end(item, thread_id, run_id)
                    thread.delivered(item)  # resumed: the consumer took the end and asks for more
                    return
                if isinstance(item, Missed):
                    for event in item.events():
                        yield event
                else:
                    yield item
            if source is not thread.source:  # a newer run's stream took the thread over (`_waiting`)
                return
        yield RunFinishedEvent(thread_id=thread_id, run_id=run_id, outcome=RunFinishedSuccessOutcome())

    async def _drive(self, thread: ThreadRun, text: str) -> None:
        """One run of the host's loop; expected failures end it with their message."""
        _current.set(thread)
        ended = Ended()
        try:
            await thread.conversation.send(text)
        except HostError as error:
            ended = Ended(str(error), type(error).__name__)
        except Exception:
            logger.exception("run on thread %r failed", thread.thread_id)  # %r: the client named it
            ended = Ended("The host failed unexpectedly; see its log.", "internal_error")
        finally:
            thread.end_message()
            thread.close_pending("the run ended before the client resumed it")
            thread.active = False
            thread.calling = None
            thread.emit(ended)
            if thread.sink is not None:
                thread.sink.close()

    def _thread(self, thread_id: str) -> ThreadRun:
        """The thread `thread_id`, now the most recently used; new past `max_threads` if one idle can go."""
        thread = self._threads.pop(thread_id, None)
        if thread is None:
            if len(self._threads) >= self.max_threads:
                self._forget_one()
            assert self._conversation is not None, "bind() the driver before running"
            thread = ThreadRun(thread_id)
            thread.conversation = self._conversation(thread)
        self._threads[thread_id] = thread
        return thread

    def _forget_one(self) -> None:
        """Forget the least recently used thread without a run active, or refuse a new thread."""
        idle = next((thread_id for thread_id, thread in self._threads.items() if not thread.active), None)
        if idle is None:
            raise RunRefused(
                "too_many_threads",
                f"The host already has {len(self._threads)} threads with runs in progress; finish one first.",
            )
        del self._threads[idle]

    # --- Approver ---------------------------------------------------------------------------------

    async def answer(self, question: Question) -> Answer:
        """Suspend the asking thread's run on an interrupt and wait for its resume (or its deadline)."""
        if question.url is not None and urlsplit(question.url).scheme.lower() not in ("http", "https"):
            # The chat makes the link clickable: a `javascript:` or `data:` one would run in the page.
            return Answer("decline", reason="the desk link is not an http(s) address, so it is not shown", desk=True)
        thread = self._asking_thread()
        if thread is None:
            return Answer(
                "decline", reason="no single web run is calling a tool, so nobody can be asked", desk=question.at_desk
            )
        pending = None
        if question.url is not None and question.repeat > 0:
            pending = self.store.for_link(thread.thread_id, question.url)
        if pending is None:
            pending = self.store.open(thread.thread_id, question, thread.calling)
        elif pending.overdue:  # nobody can answer it any more: the server settles it by the desk's decision
            return Answer("cancel", reason="the desk did not decide before the deadline", desk=True)
        else:
            pending.raise_again(question)
        answer = await self._suspend(thread, pending)
        if question.held and answer.action == "accept":
            pending.link_accepted = True
            thread.held.append(pending)
            assert self._tasks is not None
            self._tasks.start_soon(self._watch_desk, thread, pending)
        return answer

    async def _suspend(self, thread: ThreadRun, pending: PendingApproval) -> Answer:
        thread.pending = pending
        thread.raised.add(pending.id)
        thread.emit(Suspended(pending))
        answer = await pending.wait()
        if thread.pending is pending:
            thread.pending = None
        return answer

    async def _watch_desk(self, thread: ThreadRun, pending: PendingApproval) -> None:
        """A held desk approval (2025-11-25) not settled soon after a resume is raised again as still pending."""
        while True:
            with anyio.move_on_after(DESK_GRACE_SECONDS):
                await pending.settled.wait()
            if pending.settled.is_set() or not thread.active or pending.overdue:
                return
            pending.raise_again(pending.question)
            if (await self._suspend(thread, pending)).action != "accept":
                return

    def _asking_thread(self) -> ThreadRun | None:
        """The run task's own thread; on 2025-11-25 questions arrive outside it, so the one calling a tool."""
        thread = _current.get(None)
        if thread is not None:
            return thread
        calling = [thread for thread in self._threads.values() if thread.calling is not None]
        return calling[0] if len(calling) == 1 else None


_NOT_SENT = "This conversation waits for your answer to the approval below; your message was not sent."


async def _with_idles(source: MemoryObjectReceiveStream[Item], every: float) -> AsyncIterator[Item | Idle]:
    """`source`'s items, with `IDLE` after each `every` seconds without one. A receive cut short loses nothing:
    an item handed over is never cancelled away (anyio gives none to a receiver being cancelled, and cancels
    no task whose wait has ended)."""
    while True:
        with anyio.move_on_after(every) as waited:
            try:
                item = await source.receive()
            except anyio.EndOfStream:
                return
        if waited.cancelled_caught:
            yield IDLE
        else:
            yield item


def _end(item: Suspended | Ended, thread_id: str, run_id: str) -> BaseEvent:
    """The event that ends a stream: the run's interrupt, its end or its failure."""
    if isinstance(item, Suspended):
        outcome = RunFinishedInterruptOutcome(interrupts=[item.pending.interrupt()])
        return RunFinishedEvent(thread_id=thread_id, run_id=run_id, outcome=outcome)
    if item.error is None:
        return RunFinishedEvent(thread_id=thread_id, run_id=run_id, outcome=RunFinishedSuccessOutcome())
    return RunErrorEvent(message=item.error, code=item.code)


def _as_events(items: list[Item]) -> list[BaseEvent | Missed]:
    """Missed items as events: no interrupt (one still open is raised again after them, one over is told by its
    call's result); a failed run's error as a warning, as only a stream's own end may be a `RUN_ERROR`."""
    events: list[BaseEvent | Missed] = []
    for item in items:
        if isinstance(item, Ended) and item.error is not None:
            events.append(CustomEvent(name="bankgate.warning", value=f"The run failed: {item.error}"))
        elif isinstance(item, BaseEvent | Missed):
            events.append(item)
    return events


def _queued(source: MemoryObjectReceiveStream[Item]) -> Iterator[Item]:
    """What `source` holds now, without waiting."""
    while True:
        try:
            yield source.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return


def _last_user_text(run_input: RunAgentInput) -> str | None:
    for message in reversed(run_input.messages):
        if isinstance(message, UserMessage):
            content = message.content
            text = content if isinstance(content, str) else "".join(getattr(part, "text", "") for part in content)
            return text.strip() or None
    return None
