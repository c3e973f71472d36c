"""The structured results the tools return (each also carries one readable sentence as text).

A field with no value is left out of the result rather than sent as null, so each published
property has one plain `type`: neither `"type": [X, "null"]` (MCP Inspector's schema lint warns
`type-union`: clients that read `type` as one string drop it) nor `anyOf` (which clients
validate about twice as slowly). No `$ref`, no bare `true` subschemas either.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StatusName = Literal["executed", "rejected", "cancelled", "expired", "denied", "failed", "pending_approval"]


def _absent_not_null(schema: dict[str, Any]) -> None:
    """`X | None = None` published as an optional X: `present` leaves None out of the result."""
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if options and len(options) == 2 and {"type": "null"} in options and prop.get("default", 0) is None:
            (kept,) = [o for o in options if o != {"type": "null"}]
            del prop["anyOf"], prop["default"]
            prop.update({k: v for k, v in kept.items() if (k, v) != ("additionalProperties", True)})


class ToolOutcome(BaseModel):
    """Common to every tool: what happened and a sentence to relay to the user."""

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


class BalanceOutcome(ToolOutcome):
    account_id: str | None = None
    owner: str | None = None
    currency: str | None = None
    balance: str | None = Field(None, description="Exact decimal in major units, e.g. '5000.00'.")
    balance_minor: int | None = None
    formatted: str | None = Field(None, description="e.g. '$5,000.00'.")
    account_status: str | None = Field(None, description="open or closed.")


class TransferOutcome(ToolOutcome):
    receipt: dict[str, Any] | None = Field(None, description="The executed transfer, when status is executed.")


class CloseOutcome(ToolOutcome):
    receipt: dict[str, Any] | None = Field(None, description="The closure (and sweep), when status is executed.")
