"""`get_account_balance`: read one account's balance. Read-only, so the policy usually lets it run
without asking anyone; it is still refused for an account the caller may not know of."""

from collections.abc import Mapping
from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field
from sqlalchemy import Connection

from mcp_server.ledger.errors import LedgerError
from mcp_server.ledger.identifiers import parse_account_id
from mcp_server.ledger.money import format_amount, minor_units, to_decimal
from mcp_server.tools.common import (
    AccountId,
    Decided,
    LedgerAction,
    ToolResult,
    annotations,
    present,
    signature_arguments,
    who,
)
from policy.action import Call, Done, Inspection
from policy.store import GateTx


class BalanceResult(ToolResult):
    account_id: str | None = None
    owner: str | None = None
    currency: str | None = None
    balance: str | None = Field(None, description="Exact decimal in major units, e.g. '5000.00'.")
    balance_minor: int | None = None
    formatted: str | None = Field(None, description="e.g. '$5,000.00'.")
    account_status: str | None = Field(None, description="open or closed.")


BALANCE_FIELDS = tuple(name for name in BalanceResult.model_fields if name not in ToolResult.model_fields)
"""The balance's own fields: what `execute` reports and the result carries."""

ANNOTATIONS = annotations("Account balance", writes=False, idempotent=True)


async def get_account_balance(account_id: AccountId, *, outcome: Decided) -> Annotated[CallToolResult, BalanceResult]:
    """Return the current balance of one bank account (exact, in the account's currency). Read-only."""
    account = outcome.details or {}
    return present(outcome, BalanceResult, {k: account[k] for k in BALANCE_FIELDS if k in account})


class BalanceAction(LedgerAction):
    name = get_account_balance.__name__
    arguments, required = signature_arguments(get_account_balance)
    read_only = True

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        return {"account_id": parse_account_id(raw["account_id"], "account_id")}

    def expect(self, tx: GateTx[Connection], call: Call) -> None:
        """Nothing to send ahead: the balance's one read is the call's only statement before its answer."""

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        account, held, seen = self._subject(tx.ledger, call, "account_id")
        if account.status == "closed":
            raise LedgerError("account_closed", f"Account {account.id} is closed.", field="account_id")
        return Inspection(
            effect=(f"Read the balance of {who(account)}.",),
            accounts={"account": seen},
            currency=account.currency,
            minor_exponent=minor_units(account.currency),
            roles=held.roles,
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        account = inspection.accounts["account"]
        assert account is not None
        formatted = format_amount(account.balance_minor, account.currency)
        details = {
            "account_id": account.id,
            "owner": account.owner,
            "currency": account.currency,
            "balance": str(to_decimal(account.balance_minor, account.currency)),
            "balance_minor": account.balance_minor,
            "formatted": formatted,
            "account_status": account.status,
        }
        return Done(details, f"Account {account.id} balance: {formatted}")
