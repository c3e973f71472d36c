"""The Responses API: request validation, chaining through ``previous_response_id``, response objects.

Every response is stored with the whole conversation that led to it, so a continuation only sends
the new items. As on Foundry, a run ends ``run_lifetime`` seconds (ten minutes) after it was created:
a response still waiting for function call outputs can no longer be continued after that
(:func:`~.errors.response_expired`); a response that answered in text stays continuable.
A response echoes only the agent's function tools in ``tools``: other Foundry tool kinds are not
run by the stand-in model and need not parse as openai tool types.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .agents import AgentStore, AgentVersion
from .errors import invalid_request, not_found, response_expired
from .items import (
    FunctionCall,
    FunctionCallOutput,
    Item,
    Message,
    function_call_item,
    message_item,
    new_id,
    parse_input,
)
from .model import AgentProfile, Planned, Reply, respond

DEFAULT_RUN_LIFETIME_S = 600.0
"""Foundry runs expire ten minutes after creation (see docs/foundry-wire-notes.md)."""


@dataclass(frozen=True)
class _Stored:
    body: dict[str, Any]
    conversation: tuple[Item, ...]
    created: float
    """``time.monotonic()`` at creation, for the run's lifetime."""

    @property
    def awaits_outputs(self) -> bool:
        return any(item["type"] == "function_call" for item in self.body["output"])


@dataclass(frozen=True)
class _Target:
    """Who answers: an agent version, or a bare model name with no tools or instructions."""

    model: str
    agent: AgentVersion | None

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
        """Validate ``body`` as the service would, run the model and return the completed response."""
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
        output, produced = _render(respond(profile, history, new_input))
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
            "tool_choice": "auto",
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
