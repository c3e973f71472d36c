"""Argument validation at the edge (`mcp_server.edge`), before the SDK's own.

The SDK's validation errors echo the rejected input back; ours name the field and the
rule only, and they are structured like every other refusal.
"""

from collections.abc import Mapping
from typing import Any

from mcp_types import CallToolResult

from mcp_server.tools.common import failed
from policy.action import Action
from policy.results import Refusal


def checked_arguments(action: Action, params: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments parsed for `action`, once for the whole call (`prepare` reuses them); `Refusal`
    for bad ones, answered by `invalid_arguments`, and nothing runs."""
    return action.canonical(params.get("arguments") or {})


def invalid_arguments(tool: Any, refusal: Refusal) -> CallToolResult:
    return failed(f"Invalid arguments for {tool}: {refusal.message}", refusal)
