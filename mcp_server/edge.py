"""The server's one middleware: each request's edge, every concern in its own module, run here in order.

1. `internal_errors`: an unexpected exception anywhere below ends the request as 'Internal server error'.
2. `policy.mcp.desk_link.continuing`: an `approval_ref` argument moved into `_meta`; a desk link's round turned
   into the call it continues.
3. `tools.answer_check` (a 2026-07-28 round's malformed answers refused, naming what is wrong), then
   `policy.mcp.empty_accept` (an empty `accept` of the approval form answers it with nothing).
4. `tools.argument_check`, last: the call's arguments parsed once, held with the very request the tool runs on
   for `prepare` (`policy.mcp.parsed_arguments`); bad ones refused, and nothing runs.
5. On the way out, `desk_link.as_desk_link`: a `pending_approval` result as a URL input request.

One middleware, not one a concern: each re-entered the SDK's chain (a frame of its own and one of the SDK's, and
the request's method and parameters looked up again), some 30 calls a gated transfer.
"""

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from mcp_server.internal_errors import PROTOCOL_ANSWERS, internal_error
from mcp_server.tools.answer_check import refused_answer
from mcp_server.tools.argument_check import checked_arguments, invalid_arguments
from policy.action import Action
from policy.mcp.desk_link import as_desk_link, continuing
from policy.mcp.empty_accept import empty_accept_is_an_empty_form
from policy.mcp.parsed_arguments import PARSED
from policy.mcp.round import INPUT_REQUIRED_VERSIONS
from policy.results import Refusal


class Edge:
    """Server middleware: the steps above, for the gated tools `actions`."""

    def __init__(self, actions: Mapping[str, Action]) -> None:
        self.actions = actions

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        try:
            if ctx.method == "tools/call" and ctx.params is not None:
                return await self._tool_call(ctx, call_next)
            return await call_next(ctx)
        except PROTOCOL_ANSWERS:
            raise
        except Exception as exc:
            raise internal_error(ctx.method) from exc

    async def _tool_call(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params: Mapping[str, Any] = ctx.params  # type: ignore[assignment]  # not None: `__call__` looked
        continued = continuing(params)
        declined = False
        if continued is not None:
            params, declined = continued
        responses = params.get("inputResponses")
        if responses is not None:
            if ctx.protocol_version in INPUT_REQUIRED_VERSIONS:
                refused = refused_answer(responses)
                if refused is not None:
                    return refused
            params = empty_accept_is_an_empty_form(params, responses)
        if params is not ctx.params:
            ctx = replace(ctx, params=params)
        name = params.get("name")
        action = self.actions.get(name) if isinstance(name, str) else None
        if action is None:
            result = await call_next(ctx)
        else:
            try:
                arguments = checked_arguments(action, params)
            except Refusal as refusal:
                return invalid_arguments(name, refusal)
            parsed = PARSED.set((ctx, arguments))
            try:
                result = await call_next(ctx)
            finally:
                PARSED.reset(parsed)
        return result if declined else as_desk_link(ctx, result)
