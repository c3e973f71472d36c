"""What the ledger hands back: immutable, JSON round-trippable pydantic models.

Amounts are integer minor units (`*_minor`) so they survive JSON exactly; `Account`
also offers its balance as an exact `Decimal` (serialized as a string).
"""

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from mcp_server.ledger.money import to_decimal

AccountStatus = Literal["open", "closed"]
TransactionKind = Literal["transfer", "deposit", "close_sweep", "funding"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Account(_Model):
    id: str
    owner: str
    currency: str
    status: AccountStatus
    balance_minor: int
    created_at: datetime
    closed_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def balance(self) -> Decimal:
        """The balance in major units, exact (`500000` USD -> `5000.00`)."""
        return to_decimal(self.balance_minor, self.currency)


class TransferReceipt(_Model):
    transaction_id: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    memo: str | None
    from_balance_after_minor: int
    to_balance_after_minor: int
    created_at: datetime


class DepositReceipt(_Model):
    """Money arriving from outside the bank (admin operation)."""

    transaction_id: str
    account_id: str
    amount_minor: int
    currency: str
    balance_after_minor: int
    created_at: datetime


class CloseReceipt(_Model):
    account_id: str
    swept_to: str | None
    swept_amount_minor: int
    currency: str
    closed_at: datetime
    transaction_id: str | None


class HistoryLine(_Model):
    """One movement as seen from one account: negative `amount_minor` left the account."""

    transaction_id: str
    kind: TransactionKind
    amount_minor: int
    currency: str
    counterparty: str
    memo: str | None
    created_at: datetime
