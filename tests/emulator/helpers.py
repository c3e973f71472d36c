"""Shared test data: strict banking tool definitions, agent references and an SSE parser."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from azure.ai.projects.models import FunctionTool, Tool

MODEL = "gpt-4.1-mini"


def _tool(name: str, description: str, properties: dict[str, Any], optional: tuple[str, ...] = ()) -> FunctionTool:
    """A strict function tool: every property required, optional ones nullable (as the notes advise)."""
    schema = {
        key: {**prop, "type": [prop["type"], "null"]} if key in optional else prop for key, prop in properties.items()
    }
    return FunctionTool(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": schema,
            "required": list(properties),
            "additionalProperties": False,
        },
        strict=True,
    )


ACCOUNT = {"type": "string", "description": "Account id such as ACC-001"}
BALANCE_TOOL = _tool("get_account_balance", "Current balance of an account.", {"account_id": ACCOUNT})
TRANSFER_TOOL = _tool(
    "transfer_funds",
    "Move money between accounts.",
    {
        "from_account": ACCOUNT,
        "to_account": ACCOUNT,
        "amount": {"type": "string", "description": "Decimal amount, e.g. 500.00"},
        "memo": {"type": "string"},
    },
    optional=("memo",),
)
CLOSE_TOOL = _tool(
    "close_account", "Close an account.", {"account_id": ACCOUNT, "sweep_to": ACCOUNT}, optional=("sweep_to",)
)
BANKING_TOOLS: list[Tool] = [BALANCE_TOOL, TRANSFER_TOOL, CLOSE_TOOL]


def agent(name: str, version: str | None = None) -> dict[str, Any]:
    """``extra_body`` selecting an agent (latest version unless pinned)."""
    reference: dict[str, Any] = {"type": "agent_reference", "name": name}
    if version is not None:
        reference["version"] = version
    return {"agent_reference": reference}


def parse_sse(lines: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs from SSE lines; a ``[DONE]`` sentinel would end the stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    name, data = "", ""
    for line in lines:
        if line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data += line[len("data:") :].strip()
        elif not line.strip() and data:
            if data == "[DONE]":
                break
            events.append((name, json.loads(data)))
            name, data = "", ""
    return events
