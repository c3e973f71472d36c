"""The three tools as the gate's `Action`s over the ledger.

`inspect` asks the ledger to plan the operation (every check it will make, on rows locked
for the rest of the transaction, nothing written): the question shows exactly what would
happen, and a call that could not succeed is refused before anyone is asked.

The account a call reads, debits or closes is looked up through the caller's entitlements
first: one the policy hides from the caller (`[accounts] visible`) is refused exactly as a
missing one, before any other check could reveal its status, currency or balance. The
account paid into (`to_account`, `sweep_to`) is not hidden: paying someone is normal banking.
"""

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection

from mcp_server.entitlements import Held, held_in
from mcp_server.errors import LedgerError
from mcp_server.free_text import parse_memo
from mcp_server.identifiers import parse_account_id
from mcp_server.ledger import Ledger, unknown_account
from mcp_server.ledger_models import Account
from mcp_server.money import canonical_amount, format_amount, minor_units, to_decimal
from policy.action import Action, Call, Done, Inspection
from policy.document import Policy
from policy.facts import AccountFacts, CallFacts
from policy.results import Refusal
from policy.store import GateTx

MEMO_LABEL = "Memo (written by the requester):"
"""Marks the memo in a question as the requester's own words, quoted, not the bank's."""
UNEXPECTED_FIELD = "arguments"
"""The `field` of an unexpected argument: a fixed marker, since the name itself is caller input."""


class _LedgerAction:
    name: str
    arguments: tuple[str, ...]
    required: frozenset[str]
    read_only = False

    def __init__(self, ledger: Ledger, policy: Policy) -> None:
        self.ledger = ledger
        self.policy = policy

    def _fields(self, raw: object) -> Mapping[str, Any]:
        """The raw arguments, checked for shape: an object with every required name and no others."""
        if not isinstance(raw, Mapping):
            raise Refusal("invalid_arguments", f"{self.name} takes an object of named arguments.")
        for name in self.arguments:
            if name in self.required and raw.get(name) is None:
                raise Refusal("missing_argument", f"{name} is required.", name)
        if any(k not in self.arguments for k in raw):
            # Never echo the name: it is the caller's text, not ours.
            raise Refusal(
                "unexpected_argument",
                f"{self.name} takes only {', '.join(self.arguments)}; leave out any other argument.",
                UNEXPECTED_FIELD,
            )
        return raw

    def _subject(self, conn: Connection, call: Call, field: str, held: Held) -> Account:
        """The account the call reads, debits or closes (argument `field`), if the caller may know of it."""
        account_id = call.arguments[field]
        account = self.ledger.account_in(conn, account_id, field)
        facts = CallFacts(
            call.tool, call.arguments, call.principal, held.roles, accounts={"account": _facts(account, held)}
        )
        if not self.policy.sees(facts):
            raise unknown_account(account_id, field)  # exactly what a missing account gets
        return account


def _conn(tx: GateTx[Connection]) -> Connection:
    return tx.ledger


def _held(conn: Connection, call: Call, *account_ids: str) -> Held:
    """What the caller holds, read in the deciding transaction, plus the roles its credentials carry."""
    held = held_in(conn, call.principal, account_ids)
    return replace(held, roles=tuple(sorted(set(held.roles) | set(call.roles))))


def _facts(account: Account, held: Held) -> AccountFacts:
    return AccountFacts(
        account.id, account.owner, account.status, account.currency, account.balance_minor, held.to(account.id)
    )


def _who(account: Account) -> str:
    return f"{account.id} ({account.owner})"


class BalanceAction(_LedgerAction):
    name = "get_account_balance"
    arguments: tuple[str, ...] = ("account_id",)
    required = frozenset(arguments)
    read_only = True

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        return {"account_id": parse_account_id(raw["account_id"], "account_id")}

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        conn = _conn(tx)
        held = _held(conn, call, call.arguments["account_id"])
        account = self._subject(conn, call, "account_id", held)
        if account.status == "closed":
            raise LedgerError("account_closed", f"Account {account.id} is closed.", field="account_id")
        return Inspection(
            effect=(f"Read the balance of {_who(account)}.",),
            accounts={"account": _facts(account, held)},
            currency=account.currency,
            minor_exponent=minor_units(account.currency),
            roles=held.roles,
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection) -> Done:
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


class TransferAction(_LedgerAction):
    name = "transfer_funds"
    arguments: tuple[str, ...] = ("from_account", "to_account", "amount", "memo")
    required = frozenset({"from_account", "to_account", "amount"})

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        return {
            "from_account": parse_account_id(raw["from_account"], "from_account"),
            "to_account": parse_account_id(raw["to_account"], "to_account"),
            "amount": canonical_amount(raw["amount"]),
            "memo": parse_memo(raw.get("memo")),
        }

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        args, conn = call.arguments, _conn(tx)
        held = _held(conn, call, args["from_account"], args["to_account"])
        self._subject(conn, call, "from_account", held)
        source, target, amount = self.ledger.plan_transfer_in(
            conn, args["from_account"], args["to_account"], args["amount"]
        )
        money = format_amount(amount, source.currency)
        effect = [f"Transfer {money} ({source.currency}) from {_who(source)} to {_who(target)}."]
        if args["memo"]:
            effect.append(f"{MEMO_LABEL} {json.dumps(args['memo'], ensure_ascii=False)}")
        effect.append(
            f"{source.id} balance: {format_amount(source.balance_minor, source.currency)} now, "
            f"{format_amount(source.balance_minor - amount, source.currency)} after."
        )
        return Inspection(
            effect=tuple(effect),
            accounts={"from_account": _facts(source, held), "to_account": _facts(target, held)},
            currency=source.currency,
            minor_exponent=minor_units(source.currency),
            amount_minor=amount,
            roles=held.roles,
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection) -> Done:
        args, amount = call.arguments, inspection.amount_minor
        receipt = self.ledger.transfer_in(_conn(tx), args["from_account"], args["to_account"], amount, args["memo"])
        money = format_amount(amount, receipt.currency)
        after = format_amount(receipt.from_balance_after_minor, receipt.currency)
        summary = (
            f"Transferred {money} from {receipt.from_account} to {receipt.to_account}. "
            f"{receipt.from_account} balance is now {after}."
        )
        # The payee's balance is not the payer's to read.
        published = receipt.model_dump(mode="json", exclude={"to_balance_after_minor"})
        return Done({**published, "amount": money}, summary)


class CloseAction(_LedgerAction):
    name = "close_account"
    arguments: tuple[str, ...] = ("account_id", "sweep_to")
    required = frozenset({"account_id"})

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raw = self._fields(arguments)
        sweep = raw.get("sweep_to")
        return {
            "account_id": parse_account_id(raw["account_id"], "account_id"),
            "sweep_to": None if sweep is None else parse_account_id(sweep, "sweep_to"),
        }

    def inspect(self, tx: GateTx[Connection], call: Call) -> Inspection:
        """The question always names the amount swept and where it goes (also $0.00, also nowhere),
        and the approval is bound to both: a balance that changes before the answer runs nothing."""
        args, conn = call.arguments, _conn(tx)
        held = _held(conn, call, args["account_id"], args["sweep_to"] or args["account_id"])
        self._subject(conn, call, "account_id", held)
        account, sweep = self.ledger.plan_close_in(conn, args["account_id"], args["sweep_to"])
        balance = format_amount(account.balance_minor, account.currency)
        target = _who(sweep) if sweep is not None else "nowhere (no sweep_to given)"
        return Inspection(
            effect=(
                f"Close account {_who(account)} permanently.",
                f"First sweep its balance of {balance} to {target}.",
                "If that balance changes before your answer, nothing is done.",
            ),
            accounts={"account": _facts(account, held), "sweep_to": _facts(sweep, held) if sweep else None},
            currency=account.currency,
            minor_exponent=minor_units(account.currency),
            amount_minor=account.balance_minor,
            roles=held.roles,
            bound={"balance to sweep": balance, "sweep target": target},
        )

    def execute(self, tx: GateTx[Connection], call: Call, inspection: Inspection) -> Done:
        args = call.arguments
        receipt = self.ledger.close_in(_conn(tx), args["account_id"], args["sweep_to"])
        summary = f"Closed account {receipt.account_id}."
        if receipt.swept_amount_minor:
            money = format_amount(receipt.swept_amount_minor, receipt.currency)
            summary += f" Its balance of {money} was moved to {receipt.swept_to}."
        return Done(receipt.model_dump(mode="json"), summary)


def ledger_actions(ledger: Ledger, policy: Policy) -> dict[str, Action]:
    """The tools over `ledger`; `policy` says which accounts each caller may know of (the gate's policy)."""
    actions: tuple[Action, ...] = (
        BalanceAction(ledger, policy),
        TransferAction(ledger, policy),
        CloseAction(ledger, policy),
    )
    return {action.name: action for action in actions}


TOOL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    cls.name: cls.arguments for cls in (BalanceAction, TransferAction, CloseAction)
}
"""Each tool's argument names, for checking a policy file without opening a ledger."""
