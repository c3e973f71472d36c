"""Argument validation at the edge, before the SDK's own.

The SDK's validation errors echo the rejected input back; ours name the field and the
rule only, and they are structured like every other refusal.
"""

from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import CallToolResult

from mcp_server.tools.common import failed
from policy.action import Action
from policy.mcp.parsed_arguments import PARSED
from policy.results import Refusal


class ArgumentCheck:
    """Server middleware: a `tools/call` with bad arguments is answered here, and nothing runs; good
    ones are parsed here once for the whole call (`prepare` reuses them, and the request with them).
    The server's last middleware: what it holds is what the tool runs on (`policy.mcp.parsed_arguments`)."""

    def __init__(self, actions: Mapping[str, Action]) -> None:
        self.actions = actions

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call" and ctx.params is not None:
            name = ctx.params.get("name")
            action = self.actions.get(name) if isinstance(name, str) else None
            if action is not None:
                raw = ctx.params.get("arguments")
                try:
                    canonical = action.canonical(raw or {})
                except Refusal as refusal:
                    return invalid_arguments(name, refusal)
                parsed = PARSED.set((ctx, canonical))
                try:
                    return await call_next(ctx)
                finally:
                    PARSED.reset(parsed)
        return await call_next(ctx)


def invalid_arguments(tool: Any, refusal: Refusal) -> CallToolResult:
    return failed(f"Invalid arguments for {tool}: {refusal.message}", refusal)
