"""The host against an emulator as strict as the service: agent-owned fields, tool_choice, and
definitions the service stores in its own normal form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.ai.projects.models import FunctionTool, PromptAgentDefinition, Tool

from agent_host.emulator import Emulator
from agent_host.errors import ServiceFailed
from agent_host.foundry.agents import INSTRUCTIONS, choose_agent
from agent_host.foundry.response_reader import assemble_stream, reply_from_response
from agent_host.settings import Transport

from .helpers import MODEL, host_for, scripted
from .test_service import BOTH, TOOL, _agent, _ask, project_for, transport_for

AGENT_OWNED: list[tuple[str, Any]] = [
    ("tools", [TOOL]),
    ("instructions", "Answer in French."),
    ("text", {"format": {"type": "text"}}),
    ("reasoning", {"effort": "low"}),
    ("temperature", 0.2),
]


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_fields_the_agent_owns_are_refused_per_request(
    emulator: Emulator, agent_name: str, kind: Transport, stream: bool
) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        async with transport_for(kind, access, project) as transport:
            for field, value in AGENT_OWNED:
                request = {**_ask(agent), field: value}
                with pytest.raises(ServiceFailed) as refused:
                    if stream:
                        await assemble_stream(transport.stream(request), lambda _: None)
                    else:
                        await transport.create(request)
                assert "HTTP 400 invalid_payload: Not allowed when agent is specified." in str(refused.value), field
            # Without them the same request is fine.
            assert reply_from_response(await transport.create(_ask(agent))).calls


@pytest.mark.anyio
@BOTH
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_tool_choice_is_honoured(emulator: Emulator, agent_name: str, kind: Transport, stream: bool) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        agent = await _agent(project, access, agent_name)
        async with transport_for(kind, access, project) as transport:

            async def ask(**request: Any) -> Any:
                if not stream:
                    return reply_from_response(await transport.create(request))
                return await assemble_stream(transport.stream(request), lambda _: None)

            none = await ask(**_ask(agent), tool_choice="none")
            auto = await ask(**_ask(agent))
            output = {
                "type": "function_call_output",
                "call_id": auto.calls[0].call_id,
                "output": json.dumps({"balance": "5"}),
            }
            required = await ask(
                input=[output],
                previous_response_id=auto.response_id,
                agent_reference=agent.reference(),
                tool_choice="required",
            )

    assert not none.calls and "did not call get_account_balance" in none.text
    assert [call.name for call in required.calls] == ["get_account_balance"], "forced to call again after the output"


@pytest.mark.anyio
async def test_a_definition_the_service_normalises_is_recognised_as_unchanged(
    emulator: Emulator, agent_name: str
) -> None:
    loose = {
        "type": "function",
        "name": "get_account_balance",
        "description": None,
        "parameters": {"type": "object", "properties": {"account_id": {"type": "string"}}},
    }
    async with project_for(emulator.endpoint, emulator.token) as (access, project):
        first = await choose_agent(project, access, agent_name, model=MODEL, tools=[loose])
        again = await choose_agent(project, access, agent_name, model=MODEL, tools=[loose])
        stored = (await project.agents.get(agent_name)).as_dict()["versions"]["latest"]["definition"]["tools"][0]
        other = await choose_agent(project, access, agent_name, model=MODEL, tools=[TOOL])

    assert stored != loose and stored["strict"] is True, "the emulator stored its normal form"
    assert first.created and not again.created and again.version == first.version == "1"
    assert other.created and other.version == "2", "a real change still makes a new version"


@pytest.mark.anyio
@pytest.mark.parametrize(("transport", "stream"), [("sdk", False), ("sdk", True), ("rest", False), ("rest", True)])
async def test_the_round_limit_with_an_agent_that_must_call_tools(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: str, stream: bool
) -> None:
    async with project_for(emulator.endpoint, emulator.token) as (_, project):
        tools: list[Tool] = [FunctionTool(dict(TOOL))]  # as `agent_host.foundry.agents` sends a tool
        definition = PromptAgentDefinition(model=MODEL, instructions=INSTRUCTIONS, tools=tools, tool_choice="required")
        await project.agents.create_version(agent_name=agent_name, definition=definition)
    async with host_for(
        emulator,
        tmp_path,
        scripted(),
        agent_name,
        transport=transport,
        stream=stream,
        existing_agent=True,
        max_rounds=1,
    ) as host:
        conversation = host.conversation()
        first = await conversation.send("What is the balance of ACC-001?")
        second = await conversation.send("What is the balance of ACC-003?")

    # One round ran; the agent, forced to call, called again; "none" then got it to answer in text.
    for turn, account in ((first, "ACC-001"), (second, "ACC-003")):
        assert turn.limited and turn.rounds == 1
        assert [json.loads(call.arguments) for call, _ in turn.results] == [{"account_id": account}]
        assert "(round_limit)" in turn.text
        assert not turn.replies[-1].calls
    assert len(second.replies) == 3, "nothing was left over from the first turn"
