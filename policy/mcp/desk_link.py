"""Calls that continue an approval asked at the desk (steps of the server's edge, `mcp_server.edge`).

- The model continues a `pending_approval` call by repeating it with the `approval_ref`
  argument. That argument is the protocol's, not the action's: it is moved into `_meta`
  (`APPROVAL_REF_META`, which a client may also set itself) before the arguments are checked,
  so the call, its digest and its binding are exactly those of the call that was asked.
- On 2026-07-28, to a client that declares URL-mode elicitation, a `pending_approval` result
  goes out as an `InputRequiredResult` with one URL input request (the desk link) and request
  state naming the approval (the SDK seals it: bound to this tool, these arguments and this
  caller, and it expires). When the client calls again with that state, the call continues the
  approval as if it presented `approval_ref`; if it is still undecided it is asked again the
  same way, until the deadline settles it as expired. A client that declines the link gets the
  `pending_approval` result itself.
"""

import json
from collections.abc import Mapping
from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp_types import CallToolResult, ElicitRequest, ElicitRequestURLParams, InputRequiredResult

from policy.mcp.round import APPROVAL_REF_META, INPUT_REQUIRED_VERSIONS
from policy.results import Status

APPROVAL_REF = "approval_ref"
"""The tool argument through which the model continues a `pending_approval` call."""
DESK_INPUT = "io.bankgate/desk"
"""The key of the desk link among a 2026-07-28 round's input requests, and of its request state."""
_PENDING = Status.PENDING_APPROVAL.value
"""Read once: every call's result is compared with it, and an enum's `.value` is a property lookup."""
_MAPPING = (dict, Mapping)
"""`isinstance(x, Mapping)` that settles a plain dict (every call's, from JSON) without the ABC's look-up."""


def continuing(params: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool] | None:
    """A `tools/call`'s `params` with `approval_ref` moved into `_meta`, or a desk link's round turned into the
    call it continues, and whether that round declined the link; `None` for most calls, which continue nothing
    (on as they came, without a copy). The first step of the server's edge (`mcp_server.edge`)."""
    raw = params.get("arguments")
    arguments: Mapping[str, Any] = raw if isinstance(raw, _MAPPING) else {}
    presented = APPROVAL_REF in arguments
    state = params.get("requestState")
    continued = _continued(state) if state is not None else None
    if not presented and continued is None:
        return None
    params = dict(params)
    declined = False
    ref: Any = continued  # a desk link's state names the approval, over any approval_ref argument
    if presented:
        ref = arguments[APPROVAL_REF] if ref is None else ref
        params["arguments"] = {k: v for k, v in arguments.items() if k != APPROVAL_REF}
    if continued is not None:
        responses = params.pop("inputResponses", None)
        params.pop("requestState")
        answer = responses.get(DESK_INPUT) if isinstance(responses, Mapping) else None
        declined = isinstance(answer, Mapping) and answer.get("action") in ("decline", "cancel")
    if ref is not None:
        meta = params.get("_meta")
        params["_meta"] = {**(meta if isinstance(meta, Mapping) else {}), APPROVAL_REF_META: ref}
    return params, declined


def as_desk_link(ctx: ServerRequestContext[Any, Any], result: HandlerResult) -> HandlerResult:
    """`result` of a `tools/call` (that did not decline a link), a `pending_approval` one as a URL input request
    for a client that takes one (the edge's last step)."""
    body = _pending(result)
    if body is None or not _links_by_url(ctx):
        return result
    return _as_input_request(result, body)


def _continued(state: Any) -> str | None:
    """The approval a 2026-07-28 round's (unsealed) request state continues, if it is a desk link's.

    A state is sealed by the SDK, so it is one this server minted: a desk link's (`_as_input_request`,
    whose JSON holds `DESK_INPUT` as is) or the approval round's, which is only parsed if its text names
    `DESK_INPUT` somewhere (a note quoting it): every answered round passes here."""
    if not isinstance(state, str) or DESK_INPUT not in state:
        return None
    try:
        decoded = json.loads(state)
    except ValueError:
        return None
    ref = decoded.get(DESK_INPUT) if isinstance(decoded, dict) else None
    return ref if isinstance(ref, str) else None


def _links_by_url(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this client takes the desk link as a URL input request (2026-07-28 with URL mode)."""
    if ctx.protocol_version not in INPUT_REQUIRED_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None


def _pending(result: HandlerResult) -> dict[str, Any] | None:
    """The structured content of a `pending_approval` tool result; `None` for any other result (most of them)."""
    if isinstance(result, dict):  # the SDK hands results on as wire mappings
        body: Any = result.get("structuredContent")
    elif isinstance(result, CallToolResult):
        body = result.structured_content
    else:
        body = result.get("structuredContent") if isinstance(result, Mapping) else None
    return body if isinstance(body, dict) and body.get("status") == _PENDING else None


def _as_input_request(result: HandlerResult, body: dict[str, Any]) -> HandlerResult:
    """A `pending_approval` tool result (`body`, its structured content) as a URL input request, if it is whole."""
    ref, url, message = body.get("approval_ref"), body.get("approval_url"), body.get("message")
    if not (isinstance(ref, str) and isinstance(url, str) and url and isinstance(message, str)):
        return result
    link = ElicitRequest(params=ElicitRequestURLParams(message=message, url=url))
    return InputRequiredResult(input_requests={DESK_INPUT: link}, request_state=json.dumps({DESK_INPUT: ref}))
