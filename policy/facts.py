"""What a rule can see about a call: the variables of the CEL environment.

The server fills these from its own state (never from model prose) so a rule such as
"deny above 20,000 a day" is judged on the ledger's numbers.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class AccountFacts:
    """One account as rules see it: `from_account.balance_minor`, `account.owner`, ..."""

    id: str
    owner: str
    status: str
    currency: str
    balance_minor: int

    def as_cel(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "status": self.status,
            "currency": self.currency,
            "balance_minor": self.balance_minor,
        }


@dataclass(frozen=True)
class CallFacts:
    """The evaluation context of one tool call."""

    tool: str
    arguments: Mapping[str, Any]
    principal: str
    currency: str = "USD"
    minor_exponent: int = 2
    amount_minor: int = 0
    accounts: Mapping[str, AccountFacts | None] = field(default_factory=dict)
    moved_today_minor: int = 0
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def variables(self) -> dict[str, Any]:
        """The CEL variables; every name in `VARIABLES` is always bound (null when not relevant)."""
        bound: dict[str, Any] = {
            "tool": self.tool,
            "args": {k: v for k, v in self.arguments.items() if v is not None},
            "principal": self.principal,
            "currency": self.currency,
            "amount_minor": self.amount_minor,
            "moved_today_minor": self.moved_today_minor,
            "now": self.now,
        }
        for role in ACCOUNT_ROLES:
            facts = self.accounts.get(role)
            bound[role] = facts.as_cel() if facts is not None else None
        return bound


ACCOUNT_ROLES = ("from_account", "to_account", "account", "sweep_to")
"""Account variables: the accounts a call touches, by the part they play."""

VARIABLES = frozenset(
    {"tool", "args", "principal", "currency", "amount_minor", "moved_today_minor", "now", *ACCOUNT_ROLES}
)
"""Every variable a rule may name; `policy check` refuses any other."""
