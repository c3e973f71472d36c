"""The ledger's money movements as audit verification compares them with the records that claim them.

A record names the transaction it moved (`transaction_id`), the amount, and the accounts it moved
it between (its receipt). Verification compares all three with the journal rows, so a row pointed
at another account behind the server's back (balances fixed, amount and currency unchanged) is
named like any other edit: the money went elsewhere than the record, and the human, said.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from mcp_server.ledger.identifiers import system_account_id
from mcp_server.ledger.money import MINOR_UNITS, format_amount
from mcp_server.storage.stored_int import stored_int

ADOPT_TOOL = "adopt_history"
"""The tool of the `admin` record written by `audit adopt`, which names every transaction it adopts."""

Legs = tuple[tuple[str, int], ...]
"""Journal rows as (account, signed amount: negative debits), debits first."""

_LEGS = text(
    "SELECT t.id, t.kind, t.created_at, e.account_id, e.amount_minor, a.currency, e.id, t.idempotency_key "
    "FROM transactions t "
    "LEFT JOIN entries e ON e.transaction_id = t.id LEFT JOIN accounts a ON a.id = e.account_id"
)


@dataclass(frozen=True)
class Posted:
    """A ledger transaction as verification sees it: what it moved, between which accounts, when it says it was
    posted, and the idempotency key it holds (the one its record must state)."""

    kind: str
    amount_minor: int
    currency: str | None
    created_at: str
    legs: Legs
    idempotency_key: str | None = None

    def describe(self) -> str:
        if self.currency not in MINOR_UNITS:  # no entries, or an account forged with a currency we do not know
            return f"{self.kind}, {self.amount_minor} minor units"
        return f"{self.kind}, {format_amount(self.amount_minor, self.currency)}"

    def parties(self) -> dict[str, str]:
        """The accounts it moved from and to, as a receipt names them (`_parties`); {} unless it has one debit and one
        credit (a posting the books' invariants name)."""
        if len(self.legs) != 2 or not self.legs[0][1] < 0 < self.legs[1][1]:
            return {}
        return {"from_account": self.legs[0][0], "to_account": self.legs[1][0]}

    def describe_legs(self) -> str:
        return ", ".join(f"{account} {amount:+d}" for account, amount in self.legs) or "nothing"


def read_postings(conn: Connection) -> dict[str, Posted]:
    """Every ledger transaction with its journal rows."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for row in conn.execute(_LEGS):
        rows.setdefault(str(row[0]), []).append(tuple(row))
    return {tx: _posted(of_tx) for tx, of_tx in rows.items()}


def _posted(rows: Sequence[tuple[Any, ...]]) -> Posted:
    """One transaction from its rows (a single row of NULL legs when it has no entry): its amount is its largest
    leg, as a balanced two-leg movement's credit."""
    _, kind, created_at = rows[0][:3]
    key = rows[0][7]
    legs = _ordered(
        (str(row[3]), stored_int(row[4], "entries", ("id", row[6]), "amount_minor"))
        for row in rows
        if row[3] is not None
    )
    currency = max((str(row[5]) for row in rows if row[5] is not None), default=None)
    amount = max((amount for _, amount in legs), default=0)
    return Posted(str(kind), amount, currency, str(created_at), legs, None if key is None else str(key))


def _ordered(legs: Iterable[tuple[str, int]]) -> Legs:
    return tuple(sorted(legs, key=lambda leg: (leg[1], leg[0])))


@dataclass(frozen=True)
class Claim:
    """A ledger transaction a record says it moved: the amount, and the accounts it moved it from and to (None
    when the record names none: a transaction an adoption from before adoptions stated them vouches for)."""

    transaction: str | None
    amount_minor: int
    parties: tuple[str, str] | None

    def legs(self) -> Legs | None:
        """The journal rows this claim stands for, when it names its accounts."""
        if self.parties is None:
            return None
        debit, credit = self.parties
        return _ordered([(debit, -self.amount_minor), (credit, self.amount_minor)])


def claims(record: Mapping[str, Any]) -> list[Claim]:
    """What a moving record (`executed`, `admin`) claims: its own transaction for an execution or a posting,
    every adopted one for an adoption."""
    details = _details(record["result_json"])
    if is_adoption(record):
        adopted = details.get("adopted")
        items = [item for item in adopted if isinstance(item, dict)] if isinstance(adopted, list) else []
        return [Claim(_id(item.get("transaction_id")), _receipt_amount(item), _parties(item)) for item in items]
    amount = int(record["amount_minor"]) if record["event"] == "executed" else _receipt_amount(details)
    return [Claim(_id(details.get("transaction_id")), amount, _parties(details))]


def closing(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """The account an executed closing closed, and when its receipt says it did; None for any other record."""
    details = _details(record["result_json"])
    if record["event"] != "executed" or "closed_at" not in details or "account_id" not in details:
        return None
    return str(details["account_id"]), str(details["closed_at"])


def moment(value: object) -> datetime | None:
    """A stored or receipt timestamp as a time (the two spell a whole second differently); None if it is none."""
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def is_adoption(record: Mapping[str, Any]) -> bool:
    return bool(record["event"] == "admin" and record["tool"] == ADOPT_TOOL)


def _id(value: object) -> str | None:
    return None if value is None else str(value)


def _parties(details: Mapping[str, Any]) -> tuple[str, str] | None:
    """The (debited, credited) accounts a receipt names: a transfer's, a closing sweep's (the closed account
    into `swept_to`), or a deposit's (from outside the bank, its currency's system account, into `account_id`)."""
    if "to_account" in details:
        return str(details.get("from_account")), str(details["to_account"])
    if "swept_to" in details:
        return str(details.get("account_id")), str(details["swept_to"])
    if "account_id" in details and isinstance(details.get("currency"), str):
        return system_account_id(details["currency"]), str(details["account_id"])
    return None


def _details(result_json: str | None) -> Mapping[str, Any]:
    """The result's `details`; {} for anything else (an edited result is reported by the chain, not a crash)."""
    try:
        result = json.loads(result_json or "null")
    except ValueError:
        return {}
    details = result.get("details") if isinstance(result, dict) else None
    return details if isinstance(details, dict) else {}


def _receipt_amount(details: Mapping[str, Any]) -> int:
    amount = details.get("amount_minor") or details.get("swept_amount_minor") or 0
    return amount if isinstance(amount, int) else 0
