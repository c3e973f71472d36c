"""The Foundry prompt agent the host runs: created or updated from the MCP tools, or used as it is.

Without options the latest version is reused when it already has this model, these instructions and
these tools, and a new version is created otherwise, so repeated runs do not pile up versions. The
service stores a definition in its own normal form (function schemas made strict, `null` fields
dropped), so what it returns cannot be compared with what was sent: each version the host creates
carries the digest of the definition as sent in its metadata, and that is what is compared.
`--existing-agent` follows the latest version as it is; `--agent-version N` pins version N.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from azure.ai.projects.aio import AIProjectClient
from azure.ai.projects.models import FunctionTool, PromptAgentDefinition, Tool
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseTimeoutError,
)

from agent_host.errors import ConfigurationError, NotFound, ServiceFailed, http_failure, not_found, slow, unreachable
from agent_host.foundry.access import ProjectAccess, sign_in_failure

INSTRUCTIONS = (
    "You are bankgate's banking assistant. Use the tools to check balances, transfer funds and close "
    "accounts when the user asks. Call each tool once per request and relay the message it returns. "
    "The bank's system asks a human operator to approve transfers and closures by itself: never ask the "
    "user to approve or confirm anything, and never retry a call whose status is rejected, cancelled, "
    "expired or denied."
)


DIGEST_KEY = "bankgate_definition_sha256"
"""Agent-version metadata: SHA-256 of the definition as the host sent it."""


@dataclass(frozen=True)
class AgentChoice:
    """Which agent answers: `pinned` versions go in the reference; otherwise the latest answers."""

    name: str
    version: str
    pinned: bool
    created: bool = False

    def reference(self) -> dict[str, Any]:
        reference = {"type": "agent_reference", "name": self.name}
        return reference | {"version": self.version} if self.pinned else reference


async def choose_agent(
    project: AIProjectClient,
    access: ProjectAccess,
    name: str,
    *,
    model: str | None,
    tools: Sequence[Mapping[str, Any]],
    version: str | None = None,
    existing: bool = False,
) -> AgentChoice:
    """The agent to run, creating a version when needed (see the module docstring)."""
    async with azure_errors(access):
        if version is not None:
            return await _pinned(project, name, version)
        if existing:
            latest = await _latest(project, name)
            if latest is None:
                raise NotFound(
                    f"Agent {name!r} does not exist in this project.",
                    "Check AGENT_NAME / --agent, or leave out --existing-agent to create it (needs CHAT_MODEL).",
                )
            return AgentChoice(name, str(latest["version"]), pinned=False)
        if not model:
            raise ConfigurationError(
                "CHAT_MODEL is not set, and creating the agent needs a model deployment.",
                "Set CHAT_MODEL (e.g. in .env), or run an existing agent with --existing-agent or --agent-version.",
            )
        definition = _definition(model, INSTRUCTIONS, tools)
        latest = await _latest(project, name)
        if latest is not None and _unchanged(latest, definition):
            return AgentChoice(name, str(latest["version"]), pinned=True)
        created = await _create(project, name, definition)
        return AgentChoice(name, created, pinned=True, created=True)


async def create_version(
    project: AIProjectClient,
    access: ProjectAccess,
    name: str,
    *,
    model: str,
    instructions: str,
    tools: Sequence[Mapping[str, Any]],
) -> str:
    """Create a new version unconditionally (the demo's "new version" step); returns its number."""
    async with azure_errors(access):
        return await _create(project, name, _definition(model, instructions, tools))


async def _create(project: AIProjectClient, name: str, definition: PromptAgentDefinition) -> str:
    metadata = {DIGEST_KEY: _digest(definition)}
    return (await project.agents.create_version(agent_name=name, definition=definition, metadata=metadata)).version


async def _pinned(project: AIProjectClient, name: str, version: str) -> AgentChoice:
    try:
        await project.agents.get_version(name, version)
    except ResourceNotFoundError:
        versions = [v.version async for v in project.agents.list_versions(name, order="asc")]
        raise NotFound(
            f"Agent {name!r} has no version {version}.",
            f"Its versions are {', '.join(versions)}." if versions else None,
        ) from None
    return AgentChoice(name, version, pinned=True)


async def _latest(project: AIProjectClient, name: str) -> dict[str, Any] | None:
    try:
        agent = await project.agents.get(name)
    except ResourceNotFoundError:
        return None
    latest: dict[str, Any] = agent.as_dict()["versions"]["latest"]
    return latest


def _definition(model: str, instructions: str, tools: Sequence[Mapping[str, Any]]) -> PromptAgentDefinition:
    function_tools: list[Tool] = [FunctionTool(dict(tool)) for tool in tools]
    return PromptAgentDefinition(model=model, instructions=instructions, tools=function_tools)


def _digest(definition: PromptAgentDefinition) -> str:
    canonical = json.dumps(definition.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _unchanged(latest: Mapping[str, Any], wanted: PromptAgentDefinition) -> bool:
    """Whether the latest version was made from `wanted`: by its digest, or (a version made without
    one) by a definition that reads back exactly as sent (fields the service adds are ignored)."""
    if (latest.get("metadata") or {}).get(DIGEST_KEY) == _digest(wanted):
        return True
    current = latest.get("definition") or {}
    return all(current.get(key) == value for key, value in wanted.as_dict().items())


@asynccontextmanager
async def azure_errors(access: ProjectAccess) -> AsyncIterator[None]:
    """azure-core exceptions from the agents endpoints as `HostError`s."""
    try:
        yield
    except ResourceNotFoundError as error:
        raise not_found(access.endpoint, _first_line(error)) from None
    except HttpResponseError as error:
        if error.status_code is None and isinstance(error, ClientAuthenticationError):
            raise sign_in_failure(error) from None  # no token, so no request was sent
        headers: Mapping[str, str] = getattr(error.response, "headers", None) or {}
        body = {"error": {"code": error.error.code if error.error else None, "message": _first_line(error)}}
        raise http_failure(
            error.status_code or 0, body, headers, endpoint=access.endpoint, identity=await access.identity()
        ) from None
    except ServiceRequestError as error:
        raise unreachable(access.endpoint, error.message) from None
    except ServiceResponseTimeoutError:  # connected, but no answer in time
        raise slow(access.endpoint, None) from None
    except AzureError as error:  # e.g. the connection dropped mid-answer, or the answer did not decode
        raise ServiceFailed(f"The request to {access.endpoint} failed: {error.message}") from None


def _first_line(error: HttpResponseError) -> str:
    message = error.error.message if error.error is not None and error.error.message else error.message
    return str(message).splitlines()[0]
