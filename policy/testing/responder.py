"""A scripted elicitation responder for testing policies through a real MCP client.

    responder = ScriptedResponder(approve(note="ok"), reject(), cancel())
    async with Client(server, elicitation_callback=responder) as client:   # or mode="legacy"
        await client.call_tool("transfer_funds", {...})
    assert "Transfer $500.00" in responder.questions[0].message

It works as the `elicitation_callback` of `mcp.Client` on both protocol revisions: on
2025-11-25 it answers the server's `elicitation/create`; on 2026-07-28 `Client.call_tool`
routes each `InputRequiredResult` question through the same callback. Every question is
recorded, answered or not.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.client import ClientRequestContext

from policy.question import requested_confirmation

TYPE_IT_BACK = object()
"""`approve(confirmation=TYPE_IT_BACK)` (the default) types back what the question asks for."""


@dataclass(frozen=True)
class Answer:
    """One scripted reply; build it with `approve`, `reject`, `decline`, `cancel`, `invalid` or `silence`."""

    action: str
    content: Mapping[str, Any] | None = None
    confirmation: object = None
    delay: float = 0.0

    def reply(self, question: str) -> types.ElicitResult:
        if self.action != "accept" or self.content is None:
            return types.ElicitResult(action=self.action)  # type: ignore[arg-type]
        content = dict(self.content)
        if self.confirmation is TYPE_IT_BACK:
            typed = requested_confirmation(question)
            if typed is not None:
                content["confirmation"] = typed
        elif self.confirmation is not None:
            content["confirmation"] = self.confirmation
        return types.ElicitResult(action="accept", content=content)


def approve(note: str | None = None, confirmation: object = TYPE_IT_BACK) -> Answer:
    """Accept with `approve: true` (typing back any requested confirmation unless told otherwise)."""
    content: dict[str, Any] = {"approve": True} | ({"note": note} if note else {})
    return Answer("accept", content, confirmation)


def reject(note: str | None = None) -> Answer:
    """Accept the form but answer `approve: false`: a considered no."""
    return Answer("accept", {"approve": False} | ({"note": note} if note else {}))


def decline() -> Answer:
    return Answer("decline")


def cancel() -> Answer:
    return Answer("cancel")


def invalid(content: Mapping[str, Any]) -> Answer:
    """Accept with arbitrary content (wrong types, extra fields, defaults only, ...)."""
    return Answer("accept", content)


def silence(seconds: float) -> Answer:
    """Say nothing for `seconds` (to run out the server's clock), then cancel."""
    return Answer("cancel", delay=seconds)


@dataclass(frozen=True)
class Question:
    message: str
    schema: Mapping[str, Any]


class ScriptedResponder:
    """Answers questions in order; a question beyond the script is recorded and refused."""

    def __init__(self, *answers: Answer) -> None:
        self.script = list(answers)
        self.questions: list[Question] = []
        self.unexpected = 0

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        message = params.message
        schema = params.requested_schema if isinstance(params, types.ElicitRequestFormParams) else {}
        self.questions.append(Question(message, dict(schema)))
        if not self.script:
            self.unexpected += 1
            return types.ErrorData(code=types.INVALID_REQUEST, message="the scripted responder has no answer left")
        answer = self.script.pop(0)
        if answer.delay:
            await anyio.sleep(answer.delay)
        return answer.reply(message)

    @property
    def remaining(self) -> int:
        return len(self.script)

    async def asked(self, count: int = 1, *, within: float = 20.0) -> Question:
        """Wait until `count` questions have arrived (a call waiting inline on its human, in another task),
        at most `within` seconds (then `TimeoutError`); the latest."""
        with anyio.fail_after(within):
            while len(self.questions) < count:
                await anyio.sleep(0.02)
        return self.questions[-1]
