"""The structured results the tools return (each also carries one readable sentence as text)."""

from typing import Any, Literal

from pydantic import BaseModel, Field

StatusName = Literal["executed", "rejected", "cancelled", "expired", "denied", "failed"]


class ErrorInfo(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. insufficient_funds.")
    message: str
    field: str | None = None


class ToolOutcome(BaseModel):
    """Common to every tool: what happened and a sentence to relay to the user."""

    status: StatusName = Field(
        description="executed; or rejected/cancelled by the operator; expired; denied by policy; failed."
    )
    message: str = Field(description="One sentence to relay to the user as is.")
    approval_ref: str | None = Field(None, description="Reference of the human approval, when one was asked.")
    error: ErrorInfo | None = None


class BalanceOutcome(ToolOutcome):
    account_id: str | None = None
    owner: str | None = None
    currency: str | None = None
    balance: str | None = Field(None, description="Exact decimal in major units, e.g. '5000.00'.")
    balance_minor: int | None = None
    formatted: str | None = Field(None, description="e.g. '$5,000.00'.")
    account_status: Literal["open", "closed"] | None = None


class TransferOutcome(ToolOutcome):
    receipt: dict[str, Any] | None = Field(None, description="The executed transfer, when status is executed.")


class CloseOutcome(ToolOutcome):
    receipt: dict[str, Any] | None = Field(None, description="The closure (and sweep), when status is executed.")
