"""Server middleware that keeps an empty `accept` of the approval form on the record."""

from dataclasses import replace
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from policy.mcp.round import ASK_KEY


async def empty_accept_is_an_empty_form(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: an `accept` without content answers the approval form with nothing.

    The SDK would refuse it as a malformed answer before `settle` runs, leaving no record;
    as an empty form it becomes a recorded rejection like any other answer that is not a yes.
    """
    params = ctx.params
    if ctx.method == "tools/call" and params is not None:
        responses = params.get("inputResponses")
        answer = responses.get(ASK_KEY) if isinstance(responses, dict) else None
        if isinstance(answer, dict) and answer.get("action") == "accept" and answer.get("content") is None:
            fixed = {**responses, ASK_KEY: {**answer, "content": {}}}  # type: ignore[dict-item]
            ctx = replace(ctx, params={**params, "inputResponses": fixed})
    return await call_next(ctx)
