"""An empty `accept` of the approval form kept on the record (a step of the server's edge, `mcp_server.edge`)."""

from collections.abc import Mapping
from typing import Any

from policy.mcp.round import ASK_KEY


def empty_accept_is_an_empty_form(params: Mapping[str, Any], responses: object) -> Mapping[str, Any]:
    """`params` (a `tools/call`'s, carrying `responses` as its `inputResponses`) with an `accept` without content
    answering the approval form with nothing; `params` itself otherwise.

    The SDK would refuse it as a malformed answer before `settle` runs, leaving no record;
    as an empty form it becomes a recorded rejection like any other answer that is not a yes.
    """
    answer = responses.get(ASK_KEY) if isinstance(responses, dict) else None
    if isinstance(answer, dict) and answer.get("action") == "accept" and answer.get("content") is None:
        fixed = {**responses, ASK_KEY: {**answer, "content": {}}}  # type: ignore[dict-item]
        return {**params, "inputResponses": fixed}
    return params
