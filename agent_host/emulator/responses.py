"""The Responses API: request validation, chaining through `previous_response_id`, response objects.

Every response is stored with the whole conversation that led to it, so a continuation only sends
the new items. As on Foundry, a run ends `run_lifetime` seconds (ten minutes) after it was created:
a response still waiting for function call outputs can no longer be continued after that
(`.errors.response_expired`); a response that answered in text stays continuable.
A response echoes only the agent's function tools in `tools`: other Foundry tool kinds are not
run by the stand-in model and need not parse as openai tool types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent_host.emulator.agents import AgentStore, AgentVersion
from agent_host.emulator.errors import agent_owned, invalid_request, not_found, response_expired
from agent_host.emulator.items import (
    FunctionCall,
    FunctionCallOutput,
    Item,
    Message,
    function_call_item,
    message_item,
    new_id,
    parse_input,
)
from agent_host.emulator.model import AgentProfile, NoCallPossible, Planned, Reply, respond

DEFAULT_RUN_LIFETIME_S = 600.0
"""Foundry runs expire ten minutes after creation (see docs/foundry-wire-notes.md)."""


@dataclass(frozen=True)
class _Stored:
    body: dict[str, Any]
    conversation: tuple[Item, ...]
    created: float
    """`time.monotonic()` at creation, for the run's lifetime."""

    @property
    def awaits_outputs(self) -> bool:
        return any(item["type"] == "function_call" for item in self.body["output"])


@dataclass(frozen=True)
class _Target:
    """Who answers: an agent version, or a bare model name with no tools or instructions."""

    model: str
    agent: AgentVersion | None

    @property
    def tool_choice(self) -> object:
        """The agent definition's `tool_choice` (a prompt agent may set one), else `auto`."""
        return (self.agent.definition.get("tool_choice") if self.agent else None) or "auto"

    def profile(self) -> AgentProfile:
        if self.agent is None:
            return AgentProfile()
        return AgentProfile(self.agent.instructions, self.agent.function_tools())


class ResponseService:
    """Creates, stores and retrieves responses."""

    def __init__(self, agents: AgentStore, run_lifetime: float = DEFAULT_RUN_LIFETIME_S) -> None:
        self._agents = agents
        self._run_lifetime = run_lifetime
        self._stored: dict[str, _Stored] = {}

    def get(self, response_id: str) -> dict[str, Any]:
        try:
            return self._stored[response_id].body
        except KeyError:
            raise not_found(f"No response found with id '{response_id}'.") from None

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Validate `body` as the service would, run the model and return the completed response."""
        target = self._target(body)
        previous_id = body.get("previous_response_id")
        history = self._history(previous_id)
        new_input = parse_input(body.get("input"))
        _check_tool_outputs(history, new_input)
        store = body.get("store", True)
        if not isinstance(store, bool):
            raise invalid_request("Invalid type for 'store': expected a boolean.", "store")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise invalid_request("Invalid type for 'metadata': expected an object.", "metadata")

        profile = target.profile()
        tool_choice = _tool_choice(body.get("tool_choice", target.tool_choice), profile)
        try:
            planned = respond(profile, history, new_input, _choice_name(tool_choice))
        except NoCallPossible as error:
            raise invalid_request(f"The emulator's stand-in model cannot comply: {error}.", "tool_choice") from None
        output, produced = _render(planned)
        now = int(time.time())
        response: dict[str, Any] = {
            "id": new_id("resp"),
            "object": "response",
            "created_at": now,
            "status": "completed",
            "completed_at": now,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": profile.instructions,
            "max_output_tokens": None,
            "max_tool_calls": None,
            "model": target.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": previous_id,
            "reasoning": None,
            "service_tier": "default",
            "store": store,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": tool_choice,
            "tools": [tool.to_wire() for tool in profile.tools.values()],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": _usage(profile.instructions, history, new_input, produced),
            "user": None,
            "metadata": metadata,
        }
        if target.agent is not None:
            response["agent_reference"] = {
                "type": "agent_reference",
                "name": target.agent.name,
                "version": target.agent.version,
            }
        if store:
            self._stored[response["id"]] = _Stored(response, (*history, *new_input, *produced), time.monotonic())
        return response

    def _target(self, body: Mapping[str, Any]) -> _Target:
        reference = body.get("agent_reference")
        if reference is None:
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise invalid_request("Missing required parameter: 'model' (or 'agent_reference').", "model")
            return _Target(model, None)
        if not isinstance(reference, dict) or reference.get("type") != "agent_reference":
            raise invalid_request(
                'Invalid \'agent_reference\': expected {"type": "agent_reference", "name": ...}.',
                "agent_reference",
            )
        for field in AGENT_OWNED:
            if body.get(field) is not None:
                raise agent_owned(field)
        name, version = reference.get("name"), reference.get("version")
        if not isinstance(name, str) or not name:
            raise invalid_request("Missing required parameter: 'agent_reference.name'.", "agent_reference.name")
        if version is not None and not isinstance(version, str):
            raise invalid_request(
                "Invalid type for 'agent_reference.version': expected a string.", "agent_reference.version"
            )
        agent = self._agents.get(name, version)
        return _Target(agent.model, agent)

    def _history(self, previous_id: object) -> tuple[Item, ...]:
        if previous_id is None:
            return ()
        if not isinstance(previous_id, str):
            raise invalid_request("Invalid type for 'previous_response_id': expected a string.", "previous_response_id")
        stored = self._stored.get(previous_id)
        if stored is None:
            raise invalid_request(
                f"Previous response with id '{previous_id}' not found.",
                "previous_response_id",
                code="previous_response_not_found",
            )
        if stored.awaits_outputs and time.monotonic() - stored.created > self._run_lifetime:
            raise response_expired(previous_id, self._run_lifetime)
        return stored.conversation


AGENT_OWNED = ("model", "instructions", "tools", "text", "reasoning", "temperature", "top_p")
"""Request fields a prompt agent's definition owns: refused next to an `agent_reference`.

`tools`, `instructions`, `text` and `reasoning` are refused by the real service (public
reports, see docs/foundry-wire-notes.md); the others are the remaining `PromptAgentDefinition`
fields. `tool_choice`, also a definition field, is taken per request (the host's round limit uses it).
"""


def _tool_choice(raw: object, profile: AgentProfile) -> str | dict[str, str]:
    """The request's `tool_choice`, checked: a mode, or `{"type": "function", "name": <a tool>}`."""
    if raw in ("auto", "none", "required"):
        return str(raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if name not in profile.tools:
            raise invalid_request(
                f"Invalid value for 'tool_choice': no function named {name!r} among the agent's tools.",
                "tool_choice.name",
            )
        return {"type": "function", "name": str(name)}
    raise invalid_request(
        "Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or "
        '{"type": "function", "name": ...}.',
        "tool_choice",
    )


def _choice_name(choice: str | dict[str, str]) -> str:
    return choice if isinstance(choice, str) else choice["name"]


def _check_tool_outputs(history: Sequence[Item], new_input: Sequence[Item]) -> None:
    """Every tool output must answer a known call, and every call must have been answered."""
    items = (*history, *new_input)
    calls = [item.call_id for item in items if isinstance(item, FunctionCall)]
    answered = {item.call_id for item in items if isinstance(item, FunctionCallOutput)}
    for item in new_input:
        if isinstance(item, FunctionCallOutput) and item.call_id not in calls:
            raise invalid_request(f"No tool call found for function call output with call_id {item.call_id}.", "input")
    for call_id in calls:
        if call_id not in answered:
            raise invalid_request(f"No tool output found for function call {call_id}.", "input")


def _render(planned: Sequence[Planned]) -> tuple[list[dict[str, Any]], list[Item]]:
    """Output items for the wire, and the same turn as conversation items for the store."""
    output: list[dict[str, Any]] = []
    produced: list[Item] = []
    for step in planned:
        if isinstance(step, Reply):
            output.append(message_item(new_id("msg"), step.text))
            produced.append(Message("assistant", step.text))
        else:
            call = FunctionCall(new_id("call"), step.name, json.dumps(step.arguments))
            output.append(function_call_item(new_id("fc"), call))
            produced.append(call)
    return output, produced


def _usage(
    instructions: str | None, history: Sequence[Item], new_input: Sequence[Item], produced: Sequence[Item]
) -> dict[str, Any]:
    """Deterministic token counts (whitespace-separated words); the replayed history counts as cached."""
    prefix = _words([instructions or "", *_texts(history)])
    input_tokens = prefix + _words(_texts(new_input))
    output_tokens = _words(_texts(produced))
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": prefix if history else 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _texts(items: Iterable[Item]) -> list[str]:
    texts: list[str] = []
    for item in items:
        if isinstance(item, Message):
            texts.append(item.text)
        elif isinstance(item, FunctionCall):
            texts += [item.name, item.arguments]
        else:
            texts.append(item.output)
    return texts


def _words(texts: Iterable[str]) -> int:
    return sum(len(text.split()) for text in texts)
