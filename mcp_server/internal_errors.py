"""Server middleware: an unexpected exception ends its request as 'Internal server error', on every revision.

The 2026-07-28 entry already answers so; the 2025-11-25 dispatcher sends the exception's own text as the
error message, which may hold SQL, a file path or a value the caller may not see. The tools' own failures
never come here (the SDK and the gate turn them into results); this is for a bug in what runs around them.
"""

import logging
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import ValidationError

log = logging.getLogger(__name__)


async def no_internals(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    try:
        return await call_next(ctx)
    except (MCPError, ValidationError):  # the protocol's own answers (a ValidationError: invalid parameters)
        raise
    except Exception as exc:
        log.exception("%r failed unexpectedly", ctx.method)  # %r: the method name is the peer's text
        raise MCPError(INTERNAL_ERROR, "Internal server error") from exc
