"""What every tool shares: the result model and its presentation, the account-id argument, and
the ledger-backed `Action` base with its look-ups in the deciding transaction.

A tool's argument names are read off its MCP function (`signature_arguments`), so the schema
the model sees and the names the gate checks cannot drift apart. Results leave a field with no
value out rather than sending null, so each published property has one plain `type`: neither
`"type": [X, "null"]` (MCP Inspector's schema lint warns `type-union`: clients that read `type`
as one string drop it) nor `anyOf` (which clients validate about twice as slowly). No `$ref`, no
bare `true` subschemas either.
"""

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Resolve
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from mcp_server.ledger.books import AccountRow, Ledger, Seen, unknown_account
from mcp_server.ledger.entitlements import Held
from mcp_server.ledger.money import minor_units
from policy.action import Call, Done, Inspection
from policy.document import Policy
from policy.facts import AccountFacts, CallFacts
from policy.mcp.round import settle
from policy.results import GateResult, Refusal, Status
from policy.store import GateTx

AccountId = Annotated[str, Field(description="Account id: 'ACC-' followed by digits, e.g. ACC-001.")]
Decided = Annotated[GateResult, Resolve(settle)]
"""How the call ended, as the gate decided it before the tool's body runs."""

ApprovalRef = Annotated[
    str | None,
    Field(
        description=(
            "Only to continue a call that returned pending_approval: its approval_ref (e.g. APR-0123456789), "
            "with exactly the same other arguments. Leave it out otherwise."
        )
    ),
]
"""A gated tool's keyword-only argument, so the model sees it in the schema; `policy.mcp.desk_link`
moves it out of the arguments before they are checked (it is not the action's)."""

APPROVAL_NOTE = (
    "The bank's policy checks every call; when a human operator's approval is needed the system asks "
    "the operator itself, so call the tool once and relay the returned message. Statuses rejected, "
    "cancelled, expired and denied are final decisions: do not retry them. Status pending_approval "
    "means an approver must decide at the approval desk: relay the message with its link, and when "
    "the user says to continue, call the tool again with the same arguments plus approval_ref."
)
AMOUNT_FACT, SWEPT_FACT = "amount", "balance to sweep"
MONEY_FACTS = (AMOUNT_FACT, SWEPT_FACT)
"""The bound facts (`Inspection.bound`) that state the money a call moves, worded as its question words them: a
transfer's amount, a close's sweep. The desk shows them at a glance."""
UNEXPECTED_FIELD = "arguments"
"""The `field` of an unexpected argument: a fixed marker, since the name itself is caller input."""

StatusName = Literal["executed", "rejected", "cancelled", "expired", "denied", "failed", "pending_approval"]


def _absent_not_null(schema: dict[str, Any]) -> None:
    """`X | None = None` published as an optional X: `present` leaves None out of the result."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if options and len(options) == 2 and {"type": "null"} in options and prop.get("default", 0) is None:
            (kept,) = [o for o in options if o != {"type": "null"}]
            del prop["anyOf"], prop["default"]
            prop.update({k: v for k, v in kept.items() if (k, v) != ("additionalProperties", True)})


class ToolResult(BaseModel):
    """Common to every tool's structured result: what happened and a sentence to relay to the user."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    status: StatusName = Field(
        description=(
            "executed; or rejected/cancelled by the operator; expired; denied by policy; failed; or "
            "pending_approval: an approver must decide at approval_url, then call again with approval_ref."
        )
    )
    message: str = Field(description="One sentence to relay to the user as is.")
    approval_ref: str | None = Field(None, description="Reference of the human approval, when one was asked.")
    error: dict[str, Any] | None = Field(
        None, description="When failed: {code: stable machine-readable reason, message, field?}."
    )
    approval_url: str | None = Field(
        None, description="When pending_approval: the approval desk page where an approver decides."
    )
    expires_at: str | None = Field(None, description="When pending_approval: the deadline (ISO 8601, UTC).")

    def present(self) -> dict[str, Any]:
        """The structured result as sent: the fields that have a value (what the schema describes)."""
        return self.model_dump(mode="json", exclude_none=True)


def failed(message: str, refusal: Refusal) -> CallToolResult:
    """A call refused before the gate saw it (e.g. bad arguments at the edge)."""
    body = ToolResult(
        status="failed", message=message, approval_ref=None, error=refusal.as_json(), approval_url=None, expires_at=None
    )
    return CallToolResult(
        content=[TextContent(type="text", text=message)], structured_content=body.present(), is_error=True
    )


def present(decided: GateResult, model: type[ToolResult], extra: Mapping[str, Any]) -> CallToolResult:
    """The gate's result as the tool returns it: one sentence as text, the model as structured content."""
    if decided.status is Status.PENDING_APPROVAL:  # the details are the desk link, not the action's output
        extra = {key: (decided.details or {}).get(key) for key in ("approval_url", "expires_at")}
    status = decided.status
    body = model(
        status=str(status),  # type: ignore[arg-type]  # a `Status` value, as `.value` gives it, without its two calls
        message=decided.message,
        approval_ref=decided.approval_ref,
        error=dict(decided.error) if decided.error is not None else None,
        **extra,
    )
    return CallToolResult(
        content=[TextContent(type="text", text=decided.message)],
        structured_content=body.present(),
        is_error=status is Status.FAILED,  # `GateResult.is_error`, without its property's call
    )


def annotations(title: str, *, writes: bool, idempotent: bool) -> ToolAnnotations:
    """A tool's hints to clients: every tool acts on this bank's ledger alone (a closed world), and
    one that writes changes money or accounts for good (destructive)."""
    return ToolAnnotations(
        title=title,
        read_only_hint=not writes,
        destructive_hint=True if writes else None,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


def signature_arguments(tool: Callable[..., Any]) -> tuple[tuple[str, ...], frozenset[str]]:
    """The tool's argument names and the required ones, read off its MCP function: the positional
    parameters are the model's arguments (the keyword-only ones are resolved by the server)."""
    parameters = [
        p
        for p in inspect.signature(tool).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    names = tuple(p.name for p in parameters)
    return names, frozenset(p.name for p in parameters if p.default is inspect.Parameter.empty)


class LedgerAction(ABC):
    """The gate's `Action` for one tool over the ledger; each tool module defines its own."""

    name: str
    arguments: tuple[str, ...]
    required: frozenset[str]
    read_only = False

    def __init__(self, ledger: Ledger, policy: Policy) -> None:
        self.ledger = ledger
        self.policy = policy

    @abstractmethod
    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments parsed once, at the edge: what the gate decides on and the ledger receives."""

    @abstractmethod
    def expect(self, tx: GateTx[Connection], call: Call) -> None: ...

    @abstractmethod
    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection: ...

    @abstractmethod
    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection, approval_ref: str | None) -> Done: ...

    def _fields(self, raw: object) -> Mapping[str, Any]:
        """The raw arguments, checked for shape: an object with every required name and no others."""
        if not isinstance(raw, (dict, Mapping)):  # a dict first: JSON's, settled without the ABC's look-up
            raise Refusal("invalid_arguments", f"{self.name} takes an object of named arguments.")
        for name in self.arguments:
            if name in self.required and raw.get(name) is None:
                raise Refusal("missing_argument", f"{name} is required.", name)
        for name in raw:  # a plain loop: every call passes here, and `any` over a generator costs three calls
            if name not in self.arguments:
                # Never echo the name: it is the caller's text, not ours.
                raise Refusal(
                    "unexpected_argument",
                    f"{self.name} takes only {', '.join(self.arguments)}; leave out any other argument.",
                    UNEXPECTED_FIELD,
                )
        return raw

    def _subject(self, conn: Connection, call: Call, field: str) -> tuple[AccountRow, Held, AccountFacts]:
        """The account the call reads (argument `field`), if the caller may know of it, what it holds,
        and the account as rules see it."""
        account, held = self.ledger.held_account_in(conn, call.arguments[field], call.principal, field)
        held = with_credentials(held, call)
        return account, held, self._visible(call, field, held, account)

    def _visible(self, call: Call, field: str, held: Held, account: AccountRow) -> AccountFacts:
        """`account` (argument `field`) as rules see it; refused exactly as a missing one, unless the
        caller may know of it. Judged in the account's currency, the one `minor()` converts into there."""
        seen = account_facts(account, held)
        facts = CallFacts(
            call.tool,
            call.arguments,
            call.principal,
            held.roles,
            currency=account.currency,
            minor_exponent=minor_units(account.currency),
            accounts={"account": seen},
        )
        if not self.policy.sees(facts):
            raise unknown_account(account.id, field)
        return seen

    def _seen(self, call: Call, field: str) -> Seen:
        """The visibility check of a plan's first account (argument `field`), as `plan_transfer_in` calls it."""
        return lambda account, held: self._visible(call, field, with_credentials(held, call), account)


def with_credentials(held: Held, call: Call) -> Held:
    """What the caller holds in the ledger (read in the deciding transaction), plus the roles its
    credentials carry."""
    if not call.roles:
        return held
    return replace(held, roles=tuple(sorted(set(held.roles) | set(call.roles))))


def account_facts(account: AccountRow, held: Held) -> AccountFacts:
    return AccountFacts(
        account.id, account.owner, account.status, account.currency, account.balance_minor, held.to(account.id)
    )


def who(account: AccountRow) -> str:
    return f"{account.id} ({account.owner})"
