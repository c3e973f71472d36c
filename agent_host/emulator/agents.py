"""Prompt-agent versions: created, fetched and listed the way `azure-ai-projects` expects.

A version's definition is stored in the service's normal form (function tools as
`.strict_schema.normal_form` makes them), so a client comparing what it sent with what it
reads back must tolerate the difference, as it must against the real service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_host.emulator.errors import invalid_request, not_found
from agent_host.emulator.strict_schema import normal_form

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_METADATA = 16


@dataclass(frozen=True)
class FunctionToolSpec:
    """A function tool as the model needs it: its name and JSON-schema parameters."""

    name: str
    description: str | None
    parameters: Mapping[str, Any]
    strict: bool | None

    def to_wire(self) -> dict[str, Any]:
        """The tool as a response echoes it in `tools`."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "strict": self.strict,
        }


@dataclass(frozen=True)
class AgentVersion:
    """One immutable version of a prompt agent; `definition` is kept in the service's normal form."""

    name: str
    version: str
    created_at: int
    definition: Mapping[str, Any]
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def model(self) -> str:
        return str(self.definition["model"])

    @property
    def instructions(self) -> str | None:
        value = self.definition.get("instructions")
        return value if isinstance(value, str) else None

    def function_tools(self) -> dict[str, FunctionToolSpec]:
        """The version's function tools by name: the only tools the stand-in model may call."""
        return {
            tool["name"]: FunctionToolSpec(
                name=tool["name"],
                description=tool.get("description"),
                parameters=tool.get("parameters") or {},
                strict=tool.get("strict"),
            )
            for tool in self.definition.get("tools") or []
            if tool.get("type") == "function"
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "object": "agent.version",
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
            "status": "active",
            "definition": dict(self.definition),
        }


class AgentStore:
    """In-memory agents, each a list of versions numbered "1", "2", … in creation order."""

    def __init__(self) -> None:
        self._agents: dict[str, list[AgentVersion]] = {}

    def create_version(self, name: str, body: Mapping[str, Any]) -> AgentVersion:
        """Validate a `create_version` body and store it as the agent's next version."""
        _check_name(name)
        definition = _check_definition(body.get("definition"))
        description = body.get("description")
        if description is not None and not isinstance(description, str):
            raise invalid_request("Invalid type for 'description': expected a string.", "description")
        metadata = _check_metadata(body.get("metadata"))
        if body.get("draft"):
            raise invalid_request("Draft agent versions are not supported by the emulator.", "draft")
        versions = self._agents.setdefault(name, [])
        version = AgentVersion(
            name=name,
            version=str(len(versions) + 1),
            created_at=int(time.time()),
            definition=definition,
            description=description,
            metadata=metadata,
        )
        versions.append(version)
        return version

    def versions(self, name: str) -> list[AgentVersion]:
        """All versions, oldest first; 404 for an unknown agent."""
        try:
            return self._agents[name]
        except KeyError:
            raise not_found(f"Agent '{name}' not found.") from None

    def get(self, name: str, version: str | None = None) -> AgentVersion:
        """The pinned `version`, or the latest one when it is `None`."""
        versions = self.versions(name)
        if version is None:
            return versions[-1]
        for candidate in versions:
            if candidate.version == version:
                return candidate
        raise not_found(f"Version '{version}' of agent '{name}' not found.")

    def agent_object(self, name: str) -> dict[str, Any]:
        """The `agents.get` object: the agent with its latest version."""
        return {
            "object": "agent",
            "id": name,
            "name": name,
            "state": "enabled",
            "configuration_state": "enabled",
            "versions": {"latest": self.get(name).to_wire()},
        }

    def list_page(self, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        """One page of versions with OpenAI-style cursors.

        The SDK pages on `last_id` alone and sends it back as `after`; the page after the last
        item is therefore empty with `last_id: null`, which is what ends its iteration.
        """
        versions = self.versions(name)
        limit = _int_param(query, "limit", default=20, low=1, high=100)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid_request(f"Invalid value for 'order': '{order}'. Expected 'asc' or 'desc'.", "order")
        ordered = versions if order == "asc" else versions[::-1]
        ids = [v.id for v in ordered]
        start, stop = 0, len(ordered)
        if "after" in query:
            start = _cursor_index(ids, name, query, "after") + 1
        if "before" in query:
            stop = _cursor_index(ids, name, query, "before")
        window = ordered[start:stop]
        page = window[:limit]
        return {
            "object": "list",
            "data": [v.to_wire() for v in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(window) > len(page),
        }


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise invalid_request(
            f"Invalid agent name '{name}': use 1-63 letters, digits or hyphens, "
            "starting and ending with a letter or digit.",
            "agent_name",
        )


def _check_definition(definition: object) -> dict[str, Any]:
    if not isinstance(definition, dict):
        raise invalid_request("Missing required parameter: 'definition'.", "definition")
    if definition.get("kind") != "prompt":
        raise invalid_request(
            f"Unsupported agent kind {definition.get('kind')!r}: the emulator runs 'prompt' agents only.",
            "definition.kind",
        )
    model = definition.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("Missing required parameter: 'definition.model'.", "definition.model")
    if not isinstance(definition.get("instructions", ""), str | None):
        raise invalid_request(
            "Invalid type for 'definition.instructions': expected a string.", "definition.instructions"
        )
    tools = list(definition.get("tools") or [])
    if not isinstance(definition.get("tools") or [], list):
        raise invalid_request("Invalid type for 'definition.tools': expected an array.", "definition.tools")
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        param = f"definition.tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise invalid_request(f"Invalid tool at '{param}': expected an object with a 'type'.", param)
        if tool["type"] != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise invalid_request(
                f"Invalid '{param}.name': expected 1-64 letters, digits, underscores or hyphens.",
                f"{param}.name",
            )
        if name in seen:
            raise invalid_request(f"Duplicate function tool name '{name}'.", f"{param}.name")
        seen.add(name)
        if not isinstance(tool.get("parameters") or {}, dict):
            raise invalid_request(f"Invalid type for '{param}.parameters': expected an object.", f"{param}.parameters")
        tools[index] = normal_form(tool, f"{param}.parameters")
    return definition | {"tools": tools} if tools else definition


def _check_metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if (
        not isinstance(metadata, dict)
        or len(metadata) > _MAX_METADATA
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        raise invalid_request(
            f"Invalid 'metadata': expected at most {_MAX_METADATA} string key-value pairs.", "metadata"
        )
    return metadata


def _int_param(query: Mapping[str, str], param: str, *, default: int, low: int, high: int) -> int:
    raw = query.get(param)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise invalid_request(f"Invalid value for '{param}': '{raw}'. Expected an integer from {low} to {high}.", param)
    return value


def _cursor_index(ids: list[str], name: str, query: Mapping[str, str], param: str) -> int:
    """Position of a cursor, given as a version id (`name:3`) or a bare version (`3`)."""
    cursor = query[param]
    for candidate in (cursor, f"{name}:{cursor}"):
        if candidate in ids:
            return ids.index(candidate)
    raise invalid_request(f"Invalid value for '{param}': '{cursor}' is not a version of agent '{name}'.", param)
