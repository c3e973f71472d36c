"""`close_account`: close an account permanently, sweeping any balance to another account first.

The question always names the amount swept and where it goes (also $0.00, also nowhere), and
the approval is bound to both: a balance that changes before the answer runs nothing.
"""

from collections.abc import Mapping
from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field
from sqlalchemy import Connection

from mcp_server.ledger.identifiers import parse_account_id
from mcp_server.ledger.money import format_amount, minor_units
from mcp_server.tools.common import (
    APPROVAL_NOTE,
    SWEPT_FACT,
    AccountId,
    ApprovalRef,
    Decided,
    LedgerAction,
    ToolResult,
    account_facts,
    annotations,
    present,
    signature_arguments,
    who,
    with_credentials,
)
from policy.action import Call, Done, Inspection
from policy.store import GateTx

SweepTo = Annotated[
    str | None, Field(description="Optional open account of the same currency that receives the remaining balance.")
]

ANNOTATIONS = annotations("Close account", writes=True, idempotent=True)


class CloseResult(ToolResult):
    receipt: dict[str, Any] | None = Field(None, description="The closure (and sweep), when status is executed.")


async def close_account(
    account_id: AccountId, sweep_to: SweepTo = None, *, approval_ref: ApprovalRef = None, outcome: Decided
) -> Annotated[CallToolResult, CloseResult]:
    return present(outcome, CloseResult, {"receipt": outcome.details})


close_account.__doc__ = (
    "Close an account permanently. An account holding money can only be closed with sweep_to, "
    "which receives the balance in the same step. " + APPROVAL_NOTE
)


class CloseAction(LedgerAction):
    name = close_account.__name__
    arguments, required = signature_arguments(close_account)

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        sweep = raw.get("sweep_to")
        return {
            "account_id": parse_account_id(raw["account_id"], "account_id"),
            "sweep_to": None if sweep is None else parse_account_id(sweep, "sweep_to"),
        }

    def expect(self, tx: GateTx[Connection], call: Call) -> None:
        args = call.arguments
        self.ledger.expect_plan(tx.ledger, args["account_id"], args["sweep_to"], lock=tx.settles, holder=call.principal)

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        args = call.arguments
        account, sweep, holding = self.ledger.plan_close_in(
            tx.ledger,
            args["account_id"],
            args["sweep_to"],
            lock=tx.settles,  # one lock, where the effect runs; a question reads without one
            holder=call.principal,
            seen=self._seen(call, "account_id"),
        )
        held = with_credentials(holding, call)
        balance = format_amount(account.balance_minor, account.currency)
        target = who(sweep) if sweep is not None else "nowhere (no sweep_to given)"
        return Inspection(
            effect=(
                f"Close account {who(account)} permanently.",
                f"First sweep its balance of {balance} to {target}.",
                "If that balance changes before your answer, nothing is done.",
            ),
            accounts={
                "account": account_facts(account, held),
                "sweep_to": account_facts(sweep, held) if sweep else None,
            },
            currency=account.currency,
            minor_exponent=minor_units(account.currency),
            amount_minor=account.balance_minor,
            roles=held.roles,
            # The account too: its id, rewritten into the approval's arguments, would close another one.
            bound={"account": who(account), SWEPT_FACT: balance, "sweep target": target},
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        args = call.arguments
        if tx.settles:  # `inspect` planned it in this transaction on the rows it locked
            account = inspection.accounts["account"]
            assert account is not None, "a closure's inspection has its account"
            receipt = self.ledger.post_close_in(
                tx.ledger, account, inspection.accounts["sweep_to"], call.idempotency_key, approval_ref
            )
        else:
            receipt = self.ledger.close_in(tx.ledger, args["account_id"], args["sweep_to"])
        summary = f"Closed account {receipt.account_id}."
        if receipt.swept_amount_minor:
            money = format_amount(receipt.swept_amount_minor, receipt.currency)
            summary += f" Its balance of {money} was moved to {receipt.swept_to}."
        return Done(receipt.model_dump(mode="json"), summary)
