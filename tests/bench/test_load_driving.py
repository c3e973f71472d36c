"""`bench.load` drives each call with its own answer: a call refused before its question was asked leaves no
answer behind for the client's next question (which would approve a transfer meant to be rejected)."""

from typing import Any, cast

import anyio
import mcp_types as types
from mcp import Client

from bench.load import REQUIRED, Approver, Phase, drive

CALLS = 60


def said(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


class Refusing:
    """A client of a server that refuses every other question before asking it, and else does what its answer says,
    as the required-work bound does."""

    def __init__(self, responder: Approver) -> None:
        self._responder, self._questions = responder, 0

    async def call_tool(self, tool: str, arguments: dict[str, str], meta: Any = None) -> types.CallToolResult:
        if tool == REQUIRED.balance:
            return said("balance")
        self._questions += 1
        if self._questions % 2:
            return said("refused before asking", error=True)
        form = types.ElicitRequestFormParams(message="Approve?", requested_schema={"type": "object", "properties": {}})
        content = (await self._responder(cast(Any, None), form)).content or {}
        if tool == REQUIRED.close and content.get("account_id") != arguments["account_id"]:
            return said(f"typed back {content.get('account_id')}", error=True)
        return said("executed" if content.get("approve") else "rejected")


def test_a_question_refused_before_asking_leaves_no_answer_for_the_next() -> None:
    phase, responder = Phase(REQUIRED, clients=1), Approver()

    anyio.run(drive, phase, 0, cast(Client, Refusing(responder)), None, responder, float("inf"), CALLS)

    assert {"transfer-approved", "transfer-rejected", "close"} <= phase.calls.keys()
    assert {error.split(": ", 1)[1] for error in phase.errors} == {"refused before asking"}
