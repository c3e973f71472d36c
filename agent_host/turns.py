"""The one loop both wire paths share: ask the agent, run its function calls through MCP, answer them.

Every ``function_call`` is answered with a ``function_call_output`` carrying the MCP result (or a
``failed`` result when the tool could not be reached), so the chain of ``previous_response_id`` never
dangles: if sending the answers fails, they are kept and sent first on the next request. Calls of
one response run one after another, because each may put a question to the same human. After
``max_rounds`` rounds, further calls are answered as not executed and the agent is asked, with
``tool_choice: "none"``, for a final answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .mcp_link import ToolResult
from .replies import Reply, assemble_stream, reply_from_response
from .toolbox import FunctionCall, Toolbox


class ResponsesTransport(Protocol):
    """One wire path to the Responses API (see ``transport_sdk`` and ``transport_rest``)."""

    name: str

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]: ...

    def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class TurnObserver(Protocol):
    """Shows the conversation as it happens (see :class:`agent_host.display.Display`)."""

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

    @property
    def text(self) -> str:
        return self.replies[-1].text if self.replies else ""


class Conversation:
    """A chain of responses with one agent; :meth:`send` is one user request, tools included."""

    def __init__(
        self,
        transport: ResponsesTransport,
        toolbox: Toolbox,
        agent_reference: Mapping[str, Any],
        observer: TurnObserver,
        *,
        stream: bool = False,
        max_rounds: int = 8,
    ) -> None:
        self.transport = transport
        self.toolbox = toolbox
        self.agent_reference = dict(agent_reference)
        self.observer = observer
        self.stream = stream
        self.max_rounds = max_rounds
        self.previous_response_id: str | None = None
        self._unanswered: list[dict[str, Any]] = []

    async def send(self, text: str) -> Turn:
        """Send ``text`` and run the agent's function calls until it answers in text."""
        turn = Turn()
        if self._unanswered:
            await self._drive(self._unanswered, turn)
        await self._drive([{"role": "user", "content": text}], turn)
        return turn

    async def _drive(self, items: list[dict[str, Any]], turn: Turn) -> None:
        reply = await self._respond(items, turn)
        rounds = 0
        while reply.calls and rounds < self.max_rounds:
            rounds += 1
            turn.rounds += 1
            outputs = [_output(call.call_id, (await self._run(call, turn)).output) for call in reply.calls]
            reply = await self._respond(outputs, turn)
        if reply.calls:
            turn.limited = True
            self.observer.warning(
                f"Stopped after {self.max_rounds} tool round(s) (--max-rounds): the agent's "
                f"{len(reply.calls)} further call(s) were answered as not executed."
            )
            reply = await self._respond(_not_executed(reply, self.max_rounds), turn, tool_choice="none")
            # A model that calls tools anyway gets the same answer with the next request.
            self._unanswered = _not_executed(reply, self.max_rounds)

    async def _run(self, call: FunctionCall, turn: Turn) -> ToolResult:
        self.observer.tool_call(call)
        result = await self.toolbox.run(call)
        self.observer.tool_result(call, result)
        turn.results.append((call, result))
        return result

    async def _respond(self, items: list[dict[str, Any]], turn: Turn, **options: Any) -> Reply:
        """One request continuing the chain; answers for calls are kept until the service has them."""
        request: dict[str, Any] = {"input": items, "agent_reference": self.agent_reference, **options}
        previous = self.previous_response_id
        if previous is not None:
            request["previous_response_id"] = previous
        answers = [item for item in items if item.get("type") == "function_call_output"]
        self._unanswered = answers
        if self.stream:
            reply = await assemble_stream(self.transport.stream(request), self.observer.stream_text)
        else:
            reply = reply_from_response(await self.transport.create(request))
        self._unanswered = []
        self.previous_response_id = reply.response_id
        turn.replies.append(reply)
        self.observer.reply(reply, previous, self.stream)
        return reply


def _output(call_id: str, output: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}


def _not_executed(reply: Reply, limit: int) -> list[dict[str, Any]]:
    """Answers for calls the round limit stopped: nothing ran."""
    message = f"Not executed: the host allows {limit} tool round(s) per request and that limit was reached."
    output = {"status": "failed", "message": message, "error": {"code": "round_limit", "message": message}}
    return [_output(call.call_id, output) for call in reply.calls]
