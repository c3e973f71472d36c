"""An unexpected exception ends its request as 'Internal server error', on every revision (`mcp_server.edge`).

The 2026-07-28 entry already answers so; the 2025-11-25 dispatcher sends the exception's own text as the
error message, which may hold SQL, a file path or a value the caller may not see. The tools' own failures
never come here (the SDK and the gate turn them into results); this is for a bug in what runs around them.
"""

import logging

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from pydantic import ValidationError

log = logging.getLogger(__name__)

PROTOCOL_ANSWERS = (MCPError, ValidationError)
"""Exceptions that are the protocol's own answers (a ValidationError: invalid parameters), passed on as they are."""


def internal_error(method: str) -> MCPError:
    """What the caller gets instead of the exception being handled (logged here, with its traceback)."""
    log.exception("%r failed unexpectedly", method)  # %r: the method name is the peer's text
    return MCPError(INTERNAL_ERROR, "Internal server error")
