"""The approval round-trip over MCP elicitation, as SDK resolvers any gated tool can declare.

A gated tool takes `outcome: Annotated[GateResult, Resolve(settle)]`. The SDK runs the
resolvers before the tool body: `prepare` decides the call, `ask` puts the question to the
human, `settle` concludes. On 2026-07-28 `ask` returns `Elicit` and the SDK carries the
round in a sealed `InputRequiredResult`; on 2025-11-25 `ask` elicits inline under the
approval deadline. Every path that cannot reach a human, or that fails, ends in no execution.
A tool the policy never routes to a human is registered through `decided_at_once`, which
skips the round's resolvers.

A question the gate routes to the desk (`Channel.DESK`) is asked by link: on 2025-11-25 to a
client that declares URL-mode elicitation, `ask` sends the desk page and waits for the signed
decision; otherwise the call returns `pending_approval` with the link, and the same call with
its `approval_ref` (see `policy.mcp.desk_link`, which also turns that into a URL input request
on 2026-07-28) collects the decision.
"""

import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, Protocol, TypeVar, cast

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS, is_version_at_least

from policy.action import Call
from policy.channel import Channel
from policy.gate import Gate, Opening
from policy.idempotency_key import IDEMPOTENCY_KEY_META, IDEMPOTENCY_KEY_RULE, is_idempotency_key
from policy.mcp.asked import answered_digest
from policy.mcp.form import ApprovalForm, ConfirmedApprovalForm, read_answer
from policy.mcp.parsed_arguments import parsed_request
from policy.mcp.waits import Waits
from policy.question import deadline_text, span_text
from policy.results import GateResult, Refusal, Status, decision_message
from policy.store import APPROVAL_REF
from policy.verdict import EXPIRED, UNDELIVERED, Verdict, VerdictKind

logger = logging.getLogger(__name__)
R = TypeVar("R")

OUTCOME = "outcome"
"""The parameter through which a gated tool receives its `GateResult`."""

APPROVAL_REF_META = "io.bankgate/approval-ref"
"""The `_meta` key carrying the approval a call continues (the model passes it as the `approval_ref` argument)."""
_META_READ = frozenset({IDEMPOTENCY_KEY_META, APPROVAL_REF_META})
"""The `_meta` fields this server reads: every other name in its namespace (`_META_NAMESPACE`) is refused."""
_META_NAMESPACE = "io.bankgate"
DESK_POLL = 0.5
"""Seconds between looks at the desk while a URL-mode elicitation waits for its decision."""
_INPUT_REQUIRED_VERSION = "2026-07-28"
INPUT_REQUIRED_VERSIONS = frozenset(
    v for v in KNOWN_PROTOCOL_VERSIONS if is_version_at_least(v, _INPUT_REQUIRED_VERSION)
)
"""The protocol versions whose rounds are input requests (`is_version_at_least` 2026-07-28; an unknown one is not),
ranked once: every round of a call asks, twice."""
_NOT_ASKED = Verdict(VerdictKind.UNDELIVERED, "No question was needed.")


class GateHost(Protocol):
    """What the server's lifespan context provides to the resolvers."""

    gate: Gate
    waits: Waits
    """The inline waits for a human, which a stopping server ends (`policy.mcp.waits`)."""

    def caller(self, ctx: Context) -> tuple[str, tuple[str, ...]]:
        """The principal of this request and the roles its credentials carry (read anew on every request)."""
        ...

    @property
    def has_desk(self) -> bool:
        """Whether this server runs an approval desk callers can be sent to."""
        ...

    def approval_url(self, ref: str) -> str | None:
        """The desk page where approval `ref` is decided; `None` when this server has no desk."""
        ...


class AtDesk(Enum):
    """What `ask` did with a question routed to the desk."""

    LINKED = "linked"
    """Nothing to wait for here: the call answers `pending_approval` with the link."""
    WAITED = "waited"
    """The client opened the link (URL mode) and the wait ended: collect the decision."""


@dataclass(frozen=True)
class Prepared:
    """What `prepare` hands the round's other resolvers: the call decided, and what they would otherwise read
    off `ctx` again (each `Context` property is a pydantic private-attribute lookup or two, some ten calls)."""

    opening: Opening
    host: GateHost
    input_required: bool
    """The round is a 2026-07-28 input request (`INPUT_REQUIRED_VERSIONS`); else the question is asked inline."""


def url_reachable(ctx: Context) -> bool:
    """Whether this 2025-11-25 client can be sent a link by URL-mode elicitation in the middle of a call."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and elicitation.url is not None and ctx.session.can_send_request


def human_reachable(request: ServerRequestContext[Any, Any], input_required: bool) -> bool:
    """Whether this client can put a form question to a person on this transport (`request`: the call's
    `ctx.request_context`, as read once; `input_required`: `Prepared.input_required`, read already)."""
    session = request.session
    capabilities = session.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    return input_required or session.can_send_request


async def prepare(ctx: Context) -> Prepared:
    request, arguments = parsed_request(ctx)  # the edge check's: one look, not two pydantic private-attribute ones
    host = cast(GateHost, request.lifespan_context)
    input_required = request.protocol_version in INPUT_REQUIRED_VERSIONS
    opening = await _opened(ctx, request, arguments, host, input_required=input_required)
    return Prepared(opening, host, input_required)


async def _opened(
    ctx: Context,
    request: ServerRequestContext[Any, Any],
    arguments: dict[str, Any] | None,
    host: GateHost,
    *,
    input_required: bool | None,
) -> Opening:
    """The call decided (`request` and its `arguments` as the edge check parsed them, `None` where the caller
    parses them). `input_required`: whether the round is an input request, for a tool that carries the approval
    round; `None` for one that does not (then nobody is asked, nothing is answered, and a question, which the
    policy never asks of such a tool, is denied for want of one)."""
    params = request.params or {}
    tool = str(params.get("name"))
    principal, roles = host.caller(ctx)
    try:
        action = host.gate.actions.get(tool)
        if action is None:
            raise Refusal("unknown_tool", f"There is no gated tool named '{tool}'.")
        if arguments is None:
            arguments = action.canonical(params.get("arguments") or {})
        _check_meta(request.meta)
        call = Call(tool, arguments, principal, _idempotency_key(request.meta, principal), roles)
        ref = _presented_ref(params)
    except Refusal as refusal:
        return Opening(Call(tool, {}, principal, roles=roles), final=GateResult.refused(refusal))
    gate, asked, reachable, desk = host.gate, None, False, False
    if input_required is not None:
        asked, reachable = _answered(params, input_required), human_reachable(request, input_required)
        desk = host.has_desk
    try:
        if ref is not None:
            return await gate.store.run(lambda: gate.resume(call, ref))
        return await gate.store.run(lambda: gate.open(call, human_reachable=reachable, desk=desk, asked=asked))
    except Refusal as refusal:
        return Opening(call, final=GateResult.refused(refusal))
    except Exception:
        logger.exception("gate failed while deciding %s; refusing", tool)
        return Opening(call, final=_internal_denial(tool))


async def ask(
    ctx: Context, prepared: Annotated[Prepared, Resolve(prepare)]
) -> Elicit[ApprovalForm] | Verdict | AtDesk | GateResult:
    """The human's answer; a `GateResult` (refused, the approval untouched) for a call with no place to wait."""
    opening = prepared.opening
    if opening.approval is None:
        return _NOT_ASKED
    if opening.channel is Channel.DESK:
        return await _ask_at_desk(ctx, prepared)
    form = ApprovalForm if opening.confirmation is None else ConfirmedApprovalForm
    if prepared.input_required:
        return Elicit(opening.approval.question, form)
    host = prepared.host
    gate = host.gate
    left = max(0.0, opening.approval.expires_at - gate.clock())
    with gate.waiting(opening.call.principal) as crowded, host.waits.hold(left) as wait:
        if crowded is not None:
            return GateResult.refused(crowded)
        try:
            return read_answer(await ctx.elicit(opening.approval.question, form), opening.confirmation)
        except ValueError as exc:  # accepted, but the content failed the form: not a yes
            return Verdict(VerdictKind.REJECT, f"The answer was not a valid form: {exc}")
        except Exception:
            # The connection closed under the question (stdin closed, session ended): the SDK fails the wait, then
            # cancels the call. Nobody is left to be told an outcome, so none is recorded, as for a call cancelled
            # mid-question; settled as undelivered, the key of a caller that comes back would answer "no human can
            # be asked" for good, where left pending its question is asked again until its deadline.
            await anyio.lowlevel.checkpoint_if_cancelled()
            logger.warning("could not deliver approval %s", opening.approval.ref, exc_info=True)
            return UNDELIVERED
    if wait.stopped:
        return GateResult.refused(_restarting(opening), opening.approval.ref)
    return EXPIRED  # the deadline ended the wait


async def settle(
    ctx: Context,
    prepared: Annotated[Prepared, Resolve(prepare)],
    answer: Annotated[ElicitationResult[ApprovalForm], Resolve(ask)],
) -> GateResult:
    opening, host = prepared.opening, prepared.host
    if opening.final is not None:
        return opening.final
    step = answer.data if isinstance(answer, AcceptedElicitation) else answer
    if isinstance(step, GateResult):
        return step
    if isinstance(step, AtDesk):
        return await _collect(host, opening, step)
    verdict = read_answer(answer, opening.confirmation)
    try:
        return await host.gate.store.run(lambda: host.gate.conclude(opening, verdict))
    except Refusal as refusal:
        return GateResult.refused(refusal, opening.approval.ref if opening.approval else None)
    except Exception:
        logger.exception("gate failed while settling %s; nothing was executed", opening.call.tool)
        return _internal_denial(opening.call.tool)


async def _ask_at_desk(ctx: Context, prepared: Prepared) -> Verdict | AtDesk | GateResult:
    """Send a URL-mode client to the desk and wait there for the decision (2025-11-25), or leave it
    to the call's `pending_approval` result (every other client, and a call with no place left to wait,
    or whose wait the server ended as it stopped)."""
    opening, host = prepared.opening, prepared.host
    assert opening.approval is not None
    ref = opening.approval.ref
    url = host.approval_url(ref)
    if url is None or prepared.input_required or not url_reachable(ctx):
        return AtDesk.LINKED
    gate = host.gate
    left = max(0.0, opening.approval.expires_at - gate.clock())
    with gate.waiting(opening.call.principal) as crowded, host.waits.hold(left) as wait:
        if crowded is not None:
            return AtDesk.LINKED
        try:
            consent = await ctx.elicit_url(_link_message(opening, url), url, ref)
        except Exception:
            await anyio.lowlevel.checkpoint_if_cancelled()  # the connection closed: nobody to answer (as `ask`)
            logger.warning("could not send the desk link for %s; answering with the link", ref, exc_info=True)
            return AtDesk.LINKED
        if consent.action != "accept":
            return Verdict(VerdictKind.CANCEL, "The approval link was not opened.")
        while not await gate.store.run(lambda: gate.desk_decided(ref)):
            await anyio.sleep(DESK_POLL)
        await ctx.session.send_elicit_complete(ref)
    if wait.stopped:
        linked = pending_approval(opening, url)
        return replace(linked, message=f"{_stopped_waiting(ref)} {linked.message}")
    return AtDesk.WAITED


async def _collect(host: GateHost, opening: Opening, step: AtDesk) -> GateResult:
    """The call's result once the desk was asked: settled now if decided or expired, else the link."""
    gate, call = host.gate, opening.call
    assert opening.approval is not None
    ref = opening.approval.ref
    if step is AtDesk.WAITED:
        try:
            resumed = await gate.store.run(lambda: gate.resume(call, ref))
        except Refusal as refusal:
            return GateResult.refused(refusal, ref)
        if resumed.final is not None:
            return resumed.final
    url = host.approval_url(ref)
    if url is None:  # only an approval_ref can bring a question here on a server without a desk
        return GateResult.refused(_no_desk(ref), ref)
    return pending_approval(opening, url)


def _no_desk(ref: str) -> Refusal:
    """An approval_ref continued on a server with no desk: there is no link to give, and a link left
    blank would send the model to open nothing."""
    return Refusal(
        "no_approval_desk",
        f"Approval {ref} is still pending, but this server has no approval desk to continue it at: it is "
        "answered in the approval form it was asked in. Nothing was done.",
        "approval_ref",
    )


def _restarting(opening: Opening) -> Refusal:
    """A form question whose wait the stopping server ended: how to be asked it again (see `policy.mcp.waits`)."""
    assert opening.approval is not None
    again = (
        "Call again with the same arguments and idempotency key in a few seconds to be asked it again."
        if opening.call.idempotency_key is not None
        else "Call again in a few seconds to be asked again (without an idempotency key that is a new question; "
        "this one then expires unanswered)."
    )
    return Refusal("server_restarting", f"{_stopped_waiting(opening.approval.ref)} {again}")


def _stopped_waiting(ref: str) -> str:
    """What a call whose wait the stopping server ended is told first: nothing ran, the approval is intact."""
    return (
        f"The server is restarting, so it stopped waiting for a human: approval {ref} stays pending and nothing "
        "was done."
    )


def pending_approval(opening: Opening, url: str) -> GateResult:
    """The result that sends the user to the desk: link, deadline, and how to continue."""
    assert opening.approval is not None
    approval = opening.approval
    expires = datetime.fromtimestamp(approval.expires_at, UTC)
    return GateResult(
        Status.PENDING_APPROVAL,
        _link_message(opening, url),
        approval.ref,
        details={"approval_url": url, "expires_at": expires.isoformat(timespec="seconds").replace("+00:00", "Z")},
    )


def _link_message(opening: Opening, url: str) -> str:
    assert opening.approval is not None
    approval = opening.approval
    return (
        f"An approver must approve this {opening.call.tool} at the approval desk: open {url}, sign in with "
        f"your passkey and decide before {deadline_text(approval.expires_at)}, then ask me to continue within "
        f"{span_text(approval.timeout)} of the approval (I will repeat the call with approval_ref {approval.ref}): "
        "an approval not continued by then expires and nothing runs."
    )


def decided_at_once(tool: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """`tool` without its approval round, for a tool the policy never routes to a human.

    The tool's `outcome` parameter (resolved by `settle`) is supplied by `prepare`'s decision
    alone: the same code, minus the SDK's resolver machinery (which costs more than an allowed
    read) and the round's lookups: no round is answered, and a question, were one needed after
    all, is denied as having nobody to ask (no approval is created for it).
    """
    signature = inspect.signature(tool)
    hints = typing.get_type_hints(tool, include_extras=True)
    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)

    @functools.wraps(tool)
    async def decided(*args: Any, ctx: Context, **kwargs: Any) -> R:
        request, arguments = parsed_request(ctx)
        host = cast(GateHost, request.lifespan_context)
        opening = await _opened(ctx, request, arguments, host, input_required=None)
        return await tool(*args, outcome=opening.final or _internal_denial(opening.call.tool), **kwargs)

    decided.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*(p for name, p in signature.parameters.items() if name != OUTCOME), context]
    )
    decided.__annotations__ = {**{k: v for k, v in hints.items() if k != OUTCOME}, "ctx": Context}
    return decided


def _answered(params: Any, input_required: bool) -> str | None:
    """Names the question a 2026-07-28 round answers (see `policy.mcp.asked`); `None` for a new call.

    The state arrives unsealed by the SDK, which refuses one forged, expired, or sealed for
    another tool, other arguments or another principal. Read off the request's `params` (the request
    context's, as read once), where the SDK put the unsealed state and reads `ctx.request_state` from:
    `ctx.request_state` looks up two private attributes of a pydantic model, some ten calls.
    """
    state = params.get("requestState") if input_required else None
    return answered_digest(state if isinstance(state, str) else None, ASK_KEY)


def _presented_ref(params: Any) -> str | None:
    """The approval this call continues (`approval_ref`, moved into `_meta` by `policy.mcp.desk_link`)."""
    meta = params.get("_meta") if isinstance(params, dict) else None
    ref = meta.get(APPROVAL_REF_META) if isinstance(meta, dict) else None
    if ref is None:
        return None
    if not isinstance(ref, str) or not APPROVAL_REF.fullmatch(ref):
        raise Refusal(
            "invalid_approval_ref",
            "approval_ref must be the reference a pending_approval result returned, e.g. APR-0123456789.",
            "approval_ref",
        )
    return ref


def _check_meta(meta: Any) -> None:
    """Refuse a `_meta` field in the server's namespace that it does not read, in any case: ignored, an idempotency
    key under a misspelt name would leave the call unkeyed, and its retry would move the money again."""
    if not isinstance(meta, dict):
        return
    for name in meta:
        if name not in _META_READ and str(name).partition("/")[0].lower() == _META_NAMESPACE:
            raise Refusal(
                "unknown_meta_field",
                f"The only _meta fields under '{_META_NAMESPACE}/' this server reads are '{IDEMPOTENCY_KEY_META}' and "
                f"'{APPROVAL_REF_META}'; spell the one meant exactly or leave it out. Nothing was done.",
                "_meta",
            )


def _idempotency_key(meta: Any, principal: str) -> str | None:
    """The caller's key (in the request's `meta`), scoped to the caller so two principals never share
    a stored result."""
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
