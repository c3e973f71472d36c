"""The three banking tools as the model sees them: names, descriptions, schemas, annotations.

The bodies only present the gate's result; every decision is taken before a body runs, by
the `settle` resolver (or, for a tool the policy never routes to a human, by `prepare` alone
through `decided_at_once`), so no tool can execute without the policy layer.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer, Resolve
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from mcp_server.outputs import BalanceOutcome, CloseOutcome, ToolOutcome, TransferOutcome
from policy.document import Policy
from policy.mcp.round import decided_at_once, settle
from policy.results import GateResult, Status

AccountId = Annotated[str, Field(description="Account id: 'ACC-' followed by digits, e.g. ACC-001.")]
Amount = Annotated[
    str | float,
    Field(
        description=(
            "Amount in major units of the account's currency, as a decimal string or number: "
            "'500', '500.00' or 500 for $500.00. Positive, at most the currency's decimals (2 for USD)."
        )
    ),
]
Outcome = Annotated[GateResult, Resolve(settle)]
ApprovalRef = Annotated[
    str | None,
    Field(
        description=(
            "Only to continue a call that returned pending_approval: its approval_ref (e.g. APR-0123456789), "
            "with exactly the same other arguments. Leave it out otherwise."
        )
    ),
]
"""Declared so the model sees it; `policy.mcp.desk_link` takes it out of the arguments before the tool runs."""

_APPROVAL_NOTE = (
    "The bank's policy checks every call; when a human operator's approval is needed the system asks "
    "the operator itself, so call the tool once and relay the returned message. Statuses rejected, "
    "cancelled, expired and denied are final decisions: do not retry them. Status pending_approval "
    "means an approver must decide at the approval desk: relay the message with its link, and when "
    "the user says to continue, call the tool again with the same arguments plus approval_ref."
)


async def get_account_balance(account_id: AccountId, *, outcome: Outcome) -> Annotated[CallToolResult, BalanceOutcome]:
    """Return the current balance of one bank account (exact, in the account's currency). Read-only."""
    account = dict(outcome.details or {})
    return _present(outcome, BalanceOutcome, {k: account.get(k) for k in _BALANCE_FIELDS})


async def transfer_funds(
    from_account: AccountId,
    to_account: AccountId,
    amount: Amount,
    memo: Annotated[str | None, Field(description="Optional note shown on both statements (max 140).")] = None,
    approval_ref: ApprovalRef = None,
    *,
    outcome: Outcome,
) -> Annotated[CallToolResult, TransferOutcome]:
    return _present(outcome, TransferOutcome, {"receipt": outcome.details})


async def close_account(
    account_id: AccountId,
    sweep_to: Annotated[
        str | None,
        Field(description="Optional open account of the same currency that receives the remaining balance."),
    ] = None,
    approval_ref: ApprovalRef = None,
    *,
    outcome: Outcome,
) -> Annotated[CallToolResult, CloseOutcome]:
    return _present(outcome, CloseOutcome, {"receipt": outcome.details})


transfer_funds.__doc__ = "Move money from one account to another of the same currency; no overdraft. " + _APPROVAL_NOTE
close_account.__doc__ = (
    "Close an account permanently. An account holding money can only be closed with sweep_to, "
    "which receives the balance in the same step. " + _APPROVAL_NOTE
)

_BALANCE_FIELDS = ("account_id", "owner", "currency", "balance", "balance_minor", "formatted", "account_status")


def _present(outcome: GateResult, model: type[ToolOutcome], extra: dict[str, Any]) -> CallToolResult:
    if outcome.status is Status.PENDING_APPROVAL:  # the details are the desk link, not the action's output
        extra = {key: (outcome.details or {}).get(key) for key in ("approval_url", "expires_at")}
    body = model(
        status=outcome.status.value,
        message=outcome.message,
        approval_ref=outcome.approval_ref,
        error=dict(outcome.error) if outcome.error is not None else None,
        **extra,
    )
    return CallToolResult(
        content=[TextContent(type="text", text=outcome.message)],
        structured_content=body.present(),
        is_error=outcome.is_error,
    )


TOOLS: tuple[tuple[Callable[..., Awaitable[CallToolResult]], ToolAnnotations], ...] = (
    (
        get_account_balance,
        ToolAnnotations(title="Account balance", read_only_hint=True, idempotent_hint=True, open_world_hint=False),
    ),
    (
        transfer_funds,
        ToolAnnotations(
            title="Transfer funds",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    ),
    (
        close_account,
        ToolAnnotations(
            title="Close account",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    ),
)


def register_tools(server: MCPServer[Any], policy: Policy) -> None:
    """Register the tools; one the policy never routes to a human goes without the approval round."""
    for fn, annotations in TOOLS:
        tool = fn if policy.may_ask(fn.__name__) else decided_at_once(fn)
        server.tool(annotations=annotations, structured_output=True)(tool)
