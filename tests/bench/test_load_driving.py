"""`bench.load` drives each call with its own answer: a call refused before its question was asked leaves no
answer behind for the client's next question (which would approve a transfer meant to be rejected). Every
subject's questions are answered by the same responder, so each pays its clients the same answering work."""

from typing import Any, cast

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.server.elicitation import render_elicitation_schema

from bench import load
from bench.bare_parts import Approval
from bench.load import BARE, FLOOR, REQUIRED, Phase, drive
from bench.required_server import Confirmation
from policy.testing import ScriptedResponder

CALLS = 60


def said(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


class Refusing:
    """A client of a server that refuses every other question before asking it, and else asks with its real form
    and does what the answer says, as the required-work bound does."""

    def __init__(self, responder: ScriptedResponder) -> None:
        self._responder, self._questions = responder, 0

    async def call_tool(self, tool: str, arguments: dict[str, str], meta: Any = None) -> types.CallToolResult:
        if tool == REQUIRED.balance:
            return said("balance")
        self._questions += 1
        if self._questions % 2:
            return said("refused before asking", error=True)
        form = Confirmation if tool == REQUIRED.close else Approval
        asked = types.ElicitRequestFormParams(message="Approve?", requested_schema=render_elicitation_schema(form))
        answer = await self._responder(cast(Any, None), asked)
        assert isinstance(answer, types.ElicitResult), answer  # it fitted the form
        content = answer.content or {}
        if tool == REQUIRED.close and content.get("account_id") != arguments["account_id"]:
            return said(f"typed back {content.get('account_id')}", error=True)
        return said("executed" if content.get("approve") else "rejected")


def test_a_question_refused_before_asking_leaves_no_answer_for_the_next() -> None:
    phase, responder = Phase(REQUIRED, clients=1), ScriptedResponder()

    anyio.run(drive, phase, 0, cast(Client, Refusing(responder)), None, responder, float("inf"), CALLS)

    assert {"transfer-approved", "transfer-rejected", "close"} <= phase.calls.keys()
    assert {error.split(": ", 1)[1] for error in phase.errors} == {"refused before asking"}


class _Capturing:
    """Stands in for `bench.servers.http_client`: keeps the answering callback a load client is given."""

    def __init__(self, callbacks: list[object]) -> None:
        self._callbacks = callbacks

    def __call__(self, url: str, *, elicitation_callback: object, mode: str) -> "_Capturing":
        self._callbacks.append(elicitation_callback)
        return self

    async def __aenter__(self) -> "_Capturing":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def call_tool(self, *args: object, **kwargs: object) -> types.CallToolResult:
        await anyio.sleep(0.01)
        return said("accept")


@pytest.mark.anyio
@pytest.mark.parametrize("subject", [BARE, FLOOR, REQUIRED])
async def test_the_baselines_clients_answer_through_the_responder_bankgates_use(
    subject: load.Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load's clients share the machine's cores with the servers. bankgate's answered through the scripted
    responder (the question recorded, the confirmation typed back, the answer checked against the form: ~87 Python
    calls a question) and the baselines' popped a prepared dict (4): every question cost bankgate's side more."""
    callbacks: list[object] = []
    monkeypatch.setattr(load, "http_client", _Capturing(callbacks))
    await load.run_phase(subject, "unused", 2, 0.1, 3, None, None)
    assert len(callbacks) == 2 and all(type(callback) is ScriptedResponder for callback in callbacks)
