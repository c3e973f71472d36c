"""The MCP server's tools as the agent sees them, and the execution of the model's function calls."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .approvers import ApprovalDesk
from .mcp_link import McpLink, ToolResult
from .tool_schema import function_tool


@dataclass(frozen=True)
class FunctionCall:
    """A ``function_call`` output item: what the model asked to run."""

    call_id: str
    name: str
    arguments: str


class Toolbox:
    """Function tools built from the link's MCP tools; runs calls by name through the link.

    With the ``desk`` that answers the link's questions, a call whose question a person
    interrupted stops the host once its result (the server's record of the cancel) is back.
    """

    def __init__(self, link: McpLink, *, strict: bool = True, desk: ApprovalDesk | None = None) -> None:
        self.link = link
        self.desk = desk
        self.tools = {tool.name: function_tool(tool, strict=strict) for tool in link.tools}

    def definitions(self) -> list[dict[str, Any]]:
        return [tool.definition() for tool in self.tools.values()]

    async def run(self, call: FunctionCall) -> ToolResult:
        """Execute ``call`` with its ``call_id`` as the idempotency key; malformed calls are answered, not run."""
        tool = self.tools.get(call.name)
        if tool is None:
            return _refused("unknown_tool", f"There is no tool named {call.name!r}; use one of {sorted(self.tools)}.")
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError as error:
            return _refused("invalid_arguments", f"The arguments are not valid JSON: {error}.")
        if not isinstance(arguments, dict):
            return _refused("invalid_arguments", "The arguments must be a JSON object.")
        result = await self.link.call(call.name, tool.mcp_arguments(arguments), idempotency_key=call.call_id)
        if self.desk is not None:
            self.desk.stop_if_interrupted(call.name, result.output)
        return result


def _refused(code: str, message: str) -> ToolResult:
    return ToolResult({"status": "failed", "message": message, "error": {"code": code, "message": message}}, True)
