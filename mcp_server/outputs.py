"""The structured results the tools return (each also carries one readable sentence as text).

The published schemas are kept flat (`"type": ["string", "null"]` rather than `anyOf`, no
`$ref`): clients validate every result against them, and a flat schema validates several
times faster.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StatusName = Literal["executed", "rejected", "cancelled", "expired", "denied", "failed"]


def _flatten_nullables(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        options = prop.get("anyOf")
        if options and len(options) == 2 and {"type": "null"} in options:
            (kept,) = [o for o in options if o != {"type": "null"}]
            if "type" in kept and isinstance(kept["type"], str):
                del prop["anyOf"]
                prop.update(kept, type=[kept["type"], "null"])


class ToolOutcome(BaseModel):
    """Common to every tool: what happened and a sentence to relay to the user."""

    model_config = ConfigDict(json_schema_extra=_flatten_nullables)

    status: StatusName = Field(
        description="executed; or rejected/cancelled by the operator; expired; denied by policy; failed."
    )
    message: str = Field(description="One sentence to relay to the user as is.")
    approval_ref: str | None = Field(None, description="Reference of the human approval, when one was asked.")
    error: dict[str, Any] | None = Field(
        None, description="When failed: {code: stable machine-readable reason, message, field?}."
    )


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
