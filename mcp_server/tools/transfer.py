"""`transfer_funds`: move money between two accounts of the same currency, no overdraft.

The question shows the exact amount, both accounts with their owners, the requester's memo
quoted as theirs, and the payer's balance before and after.
"""

import json
from collections.abc import Mapping
from typing import Annotated, Any

from mcp_types import CallToolResult
from pydantic import Field
from sqlalchemy import Connection

from mcp_server.ledger.free_text import parse_memo
from mcp_server.ledger.identifiers import parse_account_id
from mcp_server.ledger.money import canonical_amount, format_amount, minor_units
from mcp_server.tools.common import (
    AMOUNT_FACT,
    APPROVAL_NOTE,
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

MEMO_LABEL = "Memo (written by the requester):"
"""Marks the memo in a question as the requester's own words, quoted, not the bank's."""

Amount = Annotated[
    str | float,
    Field(
        description=(
            "Amount in major units of the account's currency, as a decimal string or number: "
            "'500', '500.00' or 500 for $500.00. Positive, at most the currency's decimals (2 for USD)."
        )
    ),
]
Memo = Annotated[str | None, Field(description="Optional note shown on both statements (max 140).")]

ANNOTATIONS = annotations("Transfer funds", writes=True, idempotent=False)


class TransferResult(ToolResult):
    receipt: dict[str, Any] | None = Field(None, description="The executed transfer, when status is executed.")


async def transfer_funds(
    from_account: AccountId,
    to_account: AccountId,
    amount: Amount,
    memo: Memo = None,
    *,
    approval_ref: ApprovalRef = None,
    outcome: Decided,
) -> Annotated[CallToolResult, TransferResult]:
    return present(outcome, TransferResult, {"receipt": outcome.details})


transfer_funds.__doc__ = "Move money from one account to another of the same currency; no overdraft. " + APPROVAL_NOTE


class TransferAction(LedgerAction):
    name = transfer_funds.__name__
    arguments, required = signature_arguments(transfer_funds)

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        return {
            "from_account": parse_account_id(raw["from_account"], "from_account"),
            "to_account": parse_account_id(raw["to_account"], "to_account"),
            "amount": canonical_amount(raw["amount"]),
            "memo": parse_memo(raw.get("memo")),
        }

    def expect(self, tx: GateTx[Connection], call: Call) -> None:
        args = call.arguments
        source, target = args["from_account"], args["to_account"]
        self.ledger.expect_plan(tx.ledger, source, target, lock=tx.settles, holder=call.principal)

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        args = call.arguments
        source, target, amount, holding = self.ledger.plan_transfer_in(
            tx.ledger,
            args["from_account"],
            args["to_account"],
            args["amount"],
            lock=tx.settles,  # one lock, where the effect runs; a question reads without one
            holder=call.principal,
            seen=self._seen(call, "from_account"),
        )
        held = with_credentials(holding, call)
        money = f"{format_amount(amount, source.currency)} ({source.currency})"
        payer, payee = who(source), who(target)
        effect = [f"Transfer {money} from {payer} to {payee}."]
        bound = {AMOUNT_FACT: money, "from": payer, "to": payee}
        if args["memo"]:
            bound["memo"] = json.dumps(args["memo"], ensure_ascii=False)
            effect.append(f"{MEMO_LABEL} {bound['memo']}")
        effect.append(
            f"{source.id} balance: {format_amount(source.balance_minor, source.currency)} now, "
            f"{format_amount(source.balance_minor - amount, source.currency)} after."
        )
        return Inspection(
            effect=tuple(effect),
            accounts={"from_account": account_facts(source, held), "to_account": account_facts(target, held)},
            currency=source.currency,
            minor_exponent=minor_units(source.currency),
            amount_minor=amount,
            roles=held.roles,
            # What the question names: an account's currency or owner changed in the database before the
            # answer would otherwise move another currency, or pay someone else; and, with the arguments
            # rewritten into the approval row, another amount, account or memo.
            bound=bound,
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        args, amount = call.arguments, inspection.amount_minor
        if tx.settles:  # `inspect` planned it in this transaction on the rows it locked
            source, target = inspection.accounts["from_account"], inspection.accounts["to_account"]
            assert source is not None and target is not None, "a transfer's inspection has both accounts"
            receipt = self.ledger.post_transfer_in(
                tx.ledger, source, target, amount, args["memo"], call.idempotency_key, approval_ref
            )
        else:
            receipt = self.ledger.transfer_in(tx.ledger, args["from_account"], args["to_account"], amount, args["memo"])
        money = format_amount(amount, receipt.currency)
        after = format_amount(receipt.from_balance_after_minor, receipt.currency)
        summary = (
            f"Transferred {money} from {receipt.from_account} to {receipt.to_account}. "
            f"{receipt.from_account} balance is now {after}."
        )
        # The payee's balance is not the payer's to read.
        published = receipt.model_dump(mode="json", exclude={"to_balance_after_minor"})
        return Done({**published, "amount": money}, summary)
