"""A call's request and its arguments parsed once: the server's edge check parses them, `prepare` reuses both.

A context variable, because the edge middleware awaits the tool handler in its own context and
the two share no object the SDK lets either extend. The argument check is the edge's last step, after
every one that may replace the request, so the request it holds is the very one the tool runs on: read
from here, it costs one look, where the tool's `Context.request_context` costs two pydantic
private-attribute lookups.
"""

from contextvars import ContextVar
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context

PARSED: ContextVar[tuple[ServerRequestContext[Any, Any], dict[str, Any]] | None] = ContextVar(
    "bankgate_parsed_arguments", default=None
)
"""While a `tools/call` of a gated tool runs: its request and its arguments parsed. Set and reset by the edge
itself, around its `call_next`: every call passes there, and even a plain class's enter and exit cost
more calls than the variable's own `set` and `reset`."""


def parsed_request(ctx: Context) -> tuple[ServerRequestContext[Any, Any], dict[str, Any] | None]:
    """The call's request, with its arguments as the edge check parsed them; `None` for those on a server
    without the check (the caller parses them)."""
    known = PARSED.get()
    return known if known is not None else (ctx.request_context, None)
