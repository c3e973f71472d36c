"""The approval round-trip over MCP elicitation, as SDK resolvers any gated tool can declare.

A gated tool takes `outcome: Annotated[GateResult, Resolve(settle)]`. The SDK runs the
resolvers before the tool body: `prepare` decides the call, `ask` puts the question to the
human, `settle` concludes. On 2026-07-28 `ask` returns `Elicit` and the SDK carries the
round in a sealed `InputRequiredResult`; on 2025-11-25 `ask` elicits inline under the
approval deadline. Every path that cannot reach a human, or that fails, ends in no execution.
A tool the policy never routes to a human is registered through `decided_at_once`, which
skips the round's resolvers.
"""

import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, TypeVar, cast

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from mcp_types.version import is_version_at_least

from policy.action import Call
from policy.gate import Gate, Opening
from policy.idempotency_key import IDEMPOTENCY_KEY_META, IDEMPOTENCY_KEY_RULE, is_idempotency_key
from policy.mcp.asked import answered_digest
from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm, read_answer
from policy.results import GateResult, Refusal, Status, decision_message
from policy.verdict import EXPIRED, UNDELIVERED, Verdict, VerdictKind

logger = logging.getLogger(__name__)
R = TypeVar("R")

OUTCOME = "outcome"
"""The parameter through which a gated tool receives its `GateResult`."""

_INPUT_REQUIRED_VERSION = "2026-07-28"
_NOT_ASKED = Verdict(VerdictKind.UNDELIVERED, "No question was needed.")


class GateHost(Protocol):
    """What the server's lifespan context provides to the resolvers."""

    gate: Gate

    def caller(self, ctx: Context) -> tuple[str, tuple[str, ...]]:
        """The principal of this request and the roles its credentials carry (read anew on every request)."""
        ...


def _host(ctx: Context) -> GateHost:
    return cast(GateHost, ctx.request_context.lifespan_context)


def uses_input_required(ctx: Context) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, _INPUT_REQUIRED_VERSION)


def human_reachable(ctx: Context) -> bool:
    """Whether this client can put a form question to a person on this transport."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    return uses_input_required(ctx) or ctx.session.can_send_request


async def prepare(ctx: Context) -> Opening:
    host = _host(ctx)
    params = ctx.request_context.params or {}
    tool = str(params.get("name"))
    principal, roles = host.caller(ctx)
    try:
        action = host.gate.actions.get(tool)
        if action is None:
            raise Refusal("unknown_tool", f"There is no gated tool named '{tool}'.")
        arguments = action.canonical(params.get("arguments") or {})
        call = Call(tool, arguments, principal, _idempotency_key(ctx, principal), roles)
    except Refusal as refusal:
        return Opening(Call(tool, {}, principal, roles=roles), final=GateResult.refused(refusal))
    gate, asked, reachable = host.gate, _answered(ctx), human_reachable(ctx)
    try:
        return await gate.store.run(lambda: gate.open(call, human_reachable=reachable, asked=asked))
    except Refusal as refusal:
        return Opening(call, final=GateResult.refused(refusal))
    except Exception:
        logger.exception("gate failed while deciding %s; refusing", tool)
        return Opening(call, final=_internal_denial(tool))


async def ask(ctx: Context, opening: Annotated[Opening, Resolve(prepare)]) -> Elicit[ApprovalForm] | Verdict:
    if opening.approval is None:
        return _NOT_ASKED
    form = ApprovalForm if opening.confirmation is None else ConfirmedApprovalForm
    if uses_input_required(ctx):
        return Elicit(opening.approval.question, form)
    host = _host(ctx)
    try:
        with anyio.move_on_after(max(0.0, opening.approval.expires_at - host.gate.clock())):
            return read_answer(await ctx.elicit(opening.approval.question, form), opening.confirmation)
    except ValueError as exc:  # accepted, but the content failed the form: not a yes
        return Verdict(VerdictKind.REJECT, f"The answer was not a valid form: {exc}")
    except Exception:
        logger.warning("could not deliver approval %s", opening.approval.ref, exc_info=True)
        return UNDELIVERED
    return EXPIRED


async def settle(
    ctx: Context,
    opening: Annotated[Opening, Resolve(prepare)],
    answer: Annotated[ElicitationResult[ApprovalForm], Resolve(ask)],
) -> GateResult:
    if opening.final is not None:
        return opening.final
    verdict = read_answer(answer, opening.confirmation)
    host = _host(ctx)
    try:
        return await host.gate.store.run(lambda: host.gate.conclude(opening, verdict))
    except Refusal as refusal:
        return GateResult.refused(refusal, opening.approval.ref if opening.approval else None)
    except Exception:
        logger.exception("gate failed while settling %s; nothing was executed", opening.call.tool)
        return _internal_denial(opening.call.tool)


def decided_at_once(tool: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """`tool` without its approval round, for a tool the policy never routes to a human.

    The tool's `outcome` parameter (resolved by `settle`) is supplied by `prepare` alone: the
    same decision by the same code, minus the SDK's resolver machinery, which costs more
    than an allowed read. If a question were needed after all, the call is denied.
    """
    signature = inspect.signature(tool)
    hints = typing.get_type_hints(tool, include_extras=True)
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)

    @functools.wraps(tool)
    async def decided(*args: Any, ctx: Context, **kwargs: Any) -> R:
        opening = await prepare(ctx)
        return await tool(*args, outcome=opening.final or _internal_denial(opening.call.tool), **kwargs)

    decided.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*(p for name, p in signature.parameters.items() if name != OUTCOME), context]
    )
    decided.__annotations__ = {**{k: v for k, v in hints.items() if k != OUTCOME}, "ctx": Context}
    return decided


def _answered(ctx: Context) -> str | None:
    """Names the question a 2026-07-28 round answers (see `policy.mcp.asked`); `None` for a new call.

    The state arrives unsealed by the SDK, which refuses one forged, expired, or sealed for
    another tool, other arguments or another principal.
    """
    return answered_digest(ctx.request_state, ASK_KEY) if uses_input_required(ctx) else None


def _idempotency_key(ctx: Context, principal: str) -> str | None:
    """The caller's key, scoped to the caller so two principals never share a stored result."""
    meta: Any = ctx.request_context.meta or {}
    key = meta.get(IDEMPOTENCY_KEY_META) if isinstance(meta, dict) else None
    if key is None:
        return None
    if not is_idempotency_key(key):
        raise Refusal(
            "invalid_idempotency_key",
            f"The _meta field '{IDEMPOTENCY_KEY_META}' must be {IDEMPOTENCY_KEY_RULE}.",
            IDEMPOTENCY_KEY_META,
        )
    return f"{principal}\x1f{key}"


def _internal_denial(tool: str) -> GateResult:
    reason = "The request could not be checked because of an internal error; nothing was done."
    return GateResult(Status.DENIED, decision_message(tool, Status.DENIED, reason))


ask.__module__ = "policy.approval_round"
"""The SDK names a round's question after its resolver's `module:qualname`; that name is on the wire
(in `inputResponses` and sealed state, across a restart or an upgrade), so it keeps the module's
historical name."""
ASK_KEY = f"{ask.__module__}:{ask.__qualname__}"
"""The wire key of the approval question in `inputResponses` (2026-07-28)."""
