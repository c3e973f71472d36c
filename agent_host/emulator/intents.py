"""Banking requests recognised in a user's message by plain rules (no LLM).

A message is cut into clauses (sentences, and "and"/"then" before a new verb); each clause becomes a
balance check, a transfer, a closure, or a clarifying question when a transfer or closure lacks
something it needs. Amounts are kept as exact decimal strings ("$1,250.50" -> "1250.50").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import ClassVar

_ACCOUNT = re.compile(r"\bACC-\d+\b", re.IGNORECASE)
_VERBS = r"(?:what|check|show|get|tell|how|transfer|send|move|pay|wire|close|shut)"
_CLAUSE_BREAK = re.compile(
    r"(?<=[.!?;])\s+|\n+|\s*(?:,|\band then\b|\bthen\b|\band\b)\s*(?=(?:also\s+|please\s+)*" + _VERBS + r"\b)",
    re.IGNORECASE,
)
_CLOSE = re.compile(r"\b(?:close|shut)\b", re.IGNORECASE)
_TRANSFER = re.compile(r"\b(?:transfer|send|move|pay|wire)\b", re.IGNORECASE)
_BALANCE = re.compile(r"\b(?:balances?|how much)\b", re.IGNORECASE)
_FROM = re.compile(r"\bfrom\s+(?:account\s+)?(ACC-\d+)\b", re.IGNORECASE)
_TO = re.compile(r"\b(?:to|into)\s+(?:account\s+)?(ACC-\d+)\b", re.IGNORECASE)
_SWEEP = re.compile(r"\b(?:sweep|move|transfer|send)\b.*?\b(?:to|into)\s+(?:account\s+)?(ACC-\d+)\b", re.IGNORECASE)
_MEMO = re.compile(
    r"\b(?:memo|note|reference)\s*[:=]?\s*(?:\"([^\"]*)\"|“([^”]*)”|'([^']*)'|([^\"“'].*)$)", re.IGNORECASE
)
_NUMBER = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_AMOUNT = re.compile(
    rf"[$€£]\s?(?P<symbol>{_NUMBER})"
    rf"|(?P<worded>{_NUMBER})\s*(?:USD|EUR|GBP|dollars?|euros?|pounds?|bucks)\b"
    rf"|(?P<bare>(?<![\w.,-]){_NUMBER}(?![\w,]|\.\d))",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Balance:
    tool: ClassVar[str] = "get_account_balance"
    account_id: str

    def arguments(self) -> dict[str, str | None]:
        return {"account_id": self.account_id}


@dataclass(frozen=True)
class Transfer:
    tool: ClassVar[str] = "transfer_funds"
    from_account: str
    to_account: str
    amount: str
    memo: str | None = None

    def arguments(self) -> dict[str, str | None]:
        return {
            "from_account": self.from_account,
            "to_account": self.to_account,
            "amount": self.amount,
            "memo": self.memo,
        }


@dataclass(frozen=True)
class Close:
    tool: ClassVar[str] = "close_account"
    account_id: str
    sweep_to: str | None = None

    def arguments(self) -> dict[str, str | None]:
        return {"account_id": self.account_id, "sweep_to": self.sweep_to}


@dataclass(frozen=True)
class Clarify:
    """A banking request too incomplete to act on: ask rather than guess."""

    question: str


ToolRequest = Balance | Transfer | Close
Intent = ToolRequest | Clarify


def parse_requests(text: str) -> list[Intent]:
    """The banking requests in `text`, in order, without duplicates; empty if there are none."""
    intents: list[Intent] = []
    for clause in _CLAUSE_BREAK.split(text):
        for intent in _parse_clause(clause.strip()):
            if intent not in intents:
                intents.append(intent)
    return intents


def _parse_clause(clause: str) -> list[Intent]:
    if _CLOSE.search(clause):
        return _close(clause)
    if _TRANSFER.search(clause):
        return [_transfer(clause)]
    if _BALANCE.search(clause):
        accounts = _accounts(clause)
        if not accounts:
            return [Clarify("Which account's balance would you like? Account ids look like ACC-001.")]
        return [Balance(account) for account in accounts]
    return []


def _accounts(text: str) -> list[str]:
    return list(dict.fromkeys(match.upper() for match in _ACCOUNT.findall(text)))


def _close(clause: str) -> list[Intent]:
    sweep = _SWEEP.search(clause)
    sweep_to = sweep.group(1).upper() if sweep else None
    targets = [account for account in _accounts(clause) if account != sweep_to]
    if not targets:
        return [Clarify("Which account should I close? Account ids look like ACC-001.")]
    return [Close(account, sweep_to) for account in targets]


def _transfer(clause: str) -> Intent:
    memo_match = _MEMO.search(clause)
    memo = next((g.strip() for g in memo_match.groups() if g is not None), None) if memo_match else None
    body = clause[: memo_match.start()] if memo_match else clause
    accounts = _accounts(body)
    source = _FROM.search(body)
    target = _TO.search(body)
    from_account = source.group(1).upper() if source else None
    to_account = target.group(1).upper() if target else None
    others = [a for a in accounts if a not in (from_account, to_account)]
    if from_account is None and others:
        from_account = others.pop(0)
    if to_account is None and others:
        to_account = others.pop(0)
    amount, amount_problem = _amount(_ACCOUNT.sub(" ", body))
    if amount is None or from_account is None or to_account is None:
        missing = [
            problem
            for problem, absent in (
                (amount_problem, amount is None),
                ("which account to transfer from", from_account is None),
                ("which account to transfer to", to_account is None),
            )
            if absent
        ]
        return Clarify(f"Before I transfer anything, please tell me {join_phrases(missing)}.")
    if from_account == to_account:
        return Clarify(f"The transfer goes from {from_account} to itself; which account should receive it?")
    return Transfer(from_account, to_account, amount, memo or None)


def _amount(text: str) -> tuple[str | None, str]:
    """The single amount in `text` as a decimal string, or `None` and what to ask about it."""
    matches = list(_AMOUNT.finditer(text))
    marked = [m["symbol"] or m["worded"] for m in matches if not m["bare"]]
    bare = [m["bare"] for m in matches if m["bare"]]
    candidates: list[str] = list(dict.fromkeys(marked or bare))
    if not candidates:
        return None, "how much to transfer"
    if len(candidates) > 1:
        return None, f"which amount to transfer ({' or '.join(candidates)})"
    amount = candidates[0].replace(",", "")
    try:
        positive = Decimal(amount) > 0
    except InvalidOperation:
        positive = False
    return (amount, "") if positive else (None, "an amount greater than zero")


def join_phrases(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
