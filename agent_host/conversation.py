"""The one loop both wire paths share: ask the agent, run its function calls through MCP, answer them.

Every `function_call` is answered with a `function_call_output` carrying the MCP result (or a
`failed` result when the tool could not be reached), so the chain of `previous_response_id` never
dangles: if sending the answers fails, they are kept and sent first on the next request. Calls of
one response run one after another, because each may put a question to the same human. After
`max_rounds` rounds, further calls are answered as not executed and the agent is asked, with
`tool_choice: "none"`, for a final answer. So are the calls of one response past
`MAX_CALLS_PER_RESPONSE`, and a call whose `call_id` an earlier call had, in any conversation of the host
(`Toolbox.called`): the `call_id` is the call's idempotency key, so running it would hand the model the earlier
call's stored outcome as this one's (a second transfer reported done, none made).

When the service can no longer continue the chain (the run expired while a human decided, see
`agent_host.expiry`), the host tells the user what ran and what did not, from its own
records, and the conversation goes on on a new chain that starts with those facts. Nothing is
re-run and no answer is re-sent; a user message the expired chain refused is sent again on the new one.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, cast

from agent_host.errors import ChainExpired
from agent_host.expiry import Answer, LostChain
from agent_host.foundry.function_tools import FunctionCall, FunctionTool, Toolbox
from agent_host.foundry.pending_keys import PendingKeys
from agent_host.foundry.response_reader import Reply, assemble_stream, reply_from_response
from agent_host.mcp_link import ToolResult, failed_output

MAX_CALLS_PER_RESPONSE = 32
"""Function calls of one response the host runs; the rest are answered as not executed. The round limit
bounds how often the model calls, this how much one response may make the host do (each call can be a
question to the person, or an approval left pending at the desk)."""


class TurnAgent(NamedTuple):
    """The agent a turn's requests go to, and the function tools it was given."""

    reference: Mapping[str, Any]
    tools: Mapping[str, FunctionTool]


AgentForTurn = Callable[["TurnObserver"], Awaitable[TurnAgent]]
"""The agent a turn's requests go to, asked for at the start of each turn (see `Host.agent_for_turn`)."""


class ResponsesTransport(Protocol):
    """One wire path to the Responses API (see `transport_sdk` and `transport_rest`)."""

    name: str

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]: ...

    def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class TurnObserver(Protocol):
    """Shows the conversation as it happens (see `agent_host.display.Display`)."""

    def stream_text(self, delta: str) -> None: ...

    def reply(self, reply: Reply, previous_response_id: str | None, streamed: bool) -> None: ...

    def tool_call(self, call: FunctionCall) -> None: ...

    def tool_result(self, call: FunctionCall, result: ToolResult) -> None: ...

    def warning(self, text: str) -> None: ...


@dataclass
class Turn:
    """Everything one request produced."""

    replies: list[Reply] = field(default_factory=list)
    results: list[tuple[FunctionCall, ToolResult]] = field(default_factory=list)
    rounds: int = 0
    limited: bool = False
    """The round limit stopped the model's calls."""
    lost: LostChain | None = None
    """The chain the turn continued expired; the user's message went on a new one."""
    ended_lost: bool = False
    """The chain expired while this turn's calls were answered: the host's report ends the turn."""

    @property
    def text(self) -> str:
        if self.ended_lost and self.lost is not None:
            return self.lost.report()
        return self.replies[-1].text if self.replies else ""


class _Restarted(Exception):
    """The chain expired mid-turn; `Conversation._context` now opens the next chain."""


class Conversation:
    """A chain of responses with one agent; `send` is one user request, tools included."""

    def __init__(
        self,
        transport: ResponsesTransport,
        toolbox: Toolbox,
        agent_reference: Mapping[str, Any],
        observer: TurnObserver,
        *,
        stream: bool = False,
        max_rounds: int = 8,
        agent_for_turn: AgentForTurn | None = None,
    ) -> None:
        self.transport = transport
        self.toolbox = toolbox
        self.agent_reference = dict(agent_reference)
        self.observer = observer
        self.stream = stream
        self.max_rounds = max_rounds
        self.agent_for_turn = agent_for_turn
        self.tools: Mapping[str, FunctionTool] = toolbox.tools
        """The function tools the agent of this turn was given: its calls are checked against these, not against
        those another conversation of the same toolbox has since taken up (its model was never given them)."""
        self.previous_response_id: str | None = None
        self._unanswered: list[Answer] = []
        self._context: list[dict[str, Any]] = []
        """Items opening the next chain after an expiry: the facts of the lost one."""
        self._asked: str | None = None
        """The user message whose calls the requests being made answer."""
        self._pending = PendingKeys()
        """The keys of the approvals this conversation's calls left pending, for the calls continuing them."""

    async def send(self, text: str) -> Turn:
        """Send `text` and run the agent's function calls until it answers in text."""
        turn = Turn()
        message = {"role": "user", "content": text}
        await self.toolbox.link.relist()  # a server keeping no session may have restarted with other tools
        if self.agent_for_turn is not None:
            agent = await self.agent_for_turn(self.observer)
            self.agent_reference, self.tools = dict(agent.reference), agent.tools
        if self._unanswered:
            with suppress(_Restarted):  # the facts of the lost chain open the new one, with the message
                await self._drive(list(self._unanswered), [], turn)
        self._asked = text
        try:
            await self._drive([], [message], turn)
        except _Restarted:
            if not turn.ended_lost:  # the lost chain refused the message itself: it goes on the new one
                await self._drive([], [message], turn)
        return turn

    async def _drive(self, answers: list[Answer], items: list[dict[str, Any]], turn: Turn) -> None:
        reply = await self._respond(answers, items, turn)
        rounds = 0
        while reply.calls and rounds < self.max_rounds:
            rounds += 1
            turn.rounds += 1
            runs, beyond = reply.calls[:MAX_CALLS_PER_RESPONSE], reply.calls[MAX_CALLS_PER_RESPONSE:]
            answered = [Answer(call, (await self._run(call, turn)).output) for call in runs]
            if beyond:
                self.observer.warning(
                    f"The host runs {MAX_CALLS_PER_RESPONSE} function calls per response: the agent's "
                    f"{len(beyond)} further call(s) were answered as not executed."
                )
                answered += _beyond_the_call_limit(beyond)
            reply = await self._respond(answered, [], turn)
        if reply.calls:
            turn.limited = True
            self.observer.warning(
                f"Stopped after {self.max_rounds} tool round(s) (--max-rounds): the agent's "
                f"{len(reply.calls)} further call(s) were answered as not executed."
            )
            reply = await self._respond(_not_executed(reply, self.max_rounds), [], turn, tool_choice="none")
            # A model that calls tools anyway gets the same answer with the next request.
            self._unanswered = _not_executed(reply, self.max_rounds)

    async def _run(self, call: FunctionCall, turn: Turn) -> ToolResult:
        self.observer.tool_call(call)
        if call.call_id in self.toolbox.called:
            result = ToolResult(_reused(call), True)
        else:
            self.toolbox.called.add(call.call_id)
            result = await self.toolbox.run(call, self.tools, self._pending)
        self.observer.tool_result(call, result)
        turn.results.append((call, result))
        return result

    async def _respond(self, answers: list[Answer], items: list[dict[str, Any]], turn: Turn, **options: Any) -> Reply:
        """One request continuing the chain; answers for calls are kept until the service has them."""
        inputs = [*self._context, *[answer.item() for answer in answers], *items]
        request: dict[str, Any] = {"input": inputs, "agent_reference": self.agent_reference, **options}
        previous = self.previous_response_id
        if previous is not None:
            request["previous_response_id"] = previous
        self._unanswered = answers
        try:
            if self.stream:
                # Read up to its last event, the stream is closed rather than left to the garbage collector.
                stream = cast(AsyncGenerator[dict[str, Any], None], self.transport.stream(request))
                async with aclosing(stream) as events:
                    reply = await assemble_stream(events, self.observer.stream_text)
            else:
                reply = reply_from_response(await self.transport.create(request))
        except ChainExpired as error:
            if previous is None:
                raise
            self._restart(LostChain(_this_turns(turn, answers), error.message, self._asked), turn)
            raise _Restarted from None
        self._unanswered = []
        self._context = []
        self.previous_response_id = reply.response_id
        turn.replies.append(reply)
        self.observer.reply(reply, previous, self.stream)
        return reply

    def _restart(self, lost: LostChain, turn: Turn) -> None:
        """Drop the expired chain; the next request opens a new one with the facts of this one.

        Answers of this turn's calls mean the user's message was taken: the report ends the turn.
        """
        self.previous_response_id = None
        self._unanswered = []
        self._context = [lost.context_item()]
        turn.ended_lost = bool(turn.results) or (bool(lost.answers) and bool(turn.replies))
        turn.lost = lost
        self.observer.warning(lost.report())


def _this_turns(turn: Turn, answers: list[Answer]) -> list[Answer]:
    """Every call of the turn with its outcome (earlier rounds were told to the chain now lost too)."""
    ran = [Answer(call, result.output) for call, result in turn.results]
    known = {answer.call.call_id for answer in ran}
    return ran + [answer for answer in answers if answer.call.call_id not in known]


def _reused(call: FunctionCall) -> dict[str, Any]:
    message = (
        f"Not executed: an earlier function call had the same call_id ({call.call_id}); nothing was done for this one."
    )
    return failed_output("duplicate_call_id", message)


def _beyond_the_call_limit(calls: tuple[FunctionCall, ...]) -> list[Answer]:
    message = (
        f"Not executed: the host runs at most {MAX_CALLS_PER_RESPONSE} function calls per response; "
        "make the remaining ones in a later response."
    )
    return [Answer(call, failed_output("call_limit", message)) for call in calls]


def _not_executed(reply: Reply, limit: int) -> list[Answer]:
    """Answers for calls the round limit stopped: nothing ran."""
    message = f"Not executed: the host allows {limit} tool round(s) per request and that limit was reached."
    output = failed_output("round_limit", message)
    return [Answer(call, output) for call in reply.calls]
