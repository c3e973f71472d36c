"""What a rule can see about a call: the variables of the CEL environment.

The server fills these from its own state (never from model prose) so a rule such as
"deny above 20,000 a day" is judged on the ledger's numbers.
"""

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class AccountFacts:
    """One account as rules see it: `from_account.balance_minor`, `account.owner`, ...

    `access` is the calling principal's relations to this account (e.g. ["owner"]), from
    the server's entitlements; empty when it has none.
    """

    id: str
    owner: str
    status: str
    currency: str
    balance_minor: int
    access: tuple[str, ...] = ()

    def as_cel(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "status": self.status,
            "currency": self.currency,
            "balance_minor": self.balance_minor,
            "access": list(self.access),
        }


@dataclass(frozen=True)
class CallFacts:
    """The evaluation context of one tool call."""

    tool: str
    arguments: Mapping[str, Any]
    principal: str
    roles: tuple[str, ...] = ()
    """The principal's roles, valid on every account (e.g. "operator")."""
    currency: str = "USD"
    minor_exponent: int = 2
    amount_minor: int = 0
    accounts: Mapping[str, AccountFacts | None] = field(default_factory=dict)
    moved_today_minor: int = 0
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def variables(self, names: Collection[str] | None = None) -> dict[str, Any]:
        """The CEL variables (those in `names`, or all); an account not in the call is bound to null."""
        wanted = VARIABLES if names is None else names
        return {name: _BINDERS[name](self) for name in wanted}


def _account(role: str) -> Callable[[CallFacts], dict[str, Any] | None]:
    def bind(facts: CallFacts) -> dict[str, Any] | None:
        account = facts.accounts.get(role)
        return account.as_cel() if account is not None else None

    return bind


ACCOUNT_ARGUMENTS = {
    "from_account": "from_account",
    "to_account": "to_account",
    "account": "account_id",
    "sweep_to": "sweep_to",
}
"""Account variables (the accounts a call touches, by the part they play), each with the argument naming
its account: a tool without that argument never binds the variable."""

ACCOUNT_ROLES = tuple(ACCOUNT_ARGUMENTS)

RELATIONS = ("owner", "viewer")
"""What `access` can hold: a principal's relations to an account (the server grants no other)."""

ACCOUNT_STATUSES = ("open", "closed")
"""What an account's `status` can be."""

VARIABLES = frozenset(
    {"tool", "args", "principal", "roles", "currency", "amount_minor", "moved_today_minor", "now", *ACCOUNT_ROLES}
)
"""Every variable a rule may name; `policy check` refuses any other."""

AGGREGATES = frozenset({"moved_today_minor"})
"""Variables aggregated over the principal's other calls. A decision that reads one is taken
in the principal's turn (`GateTx.take_turn`), and so is every call that could change one, so
that concurrent calls can never together pass a limit that each alone respects. A new fact
of this kind belongs here."""

_BINDERS: dict[str, Callable[[CallFacts], Any]] = {
    "tool": lambda f: f.tool,
    "args": lambda f: {k: v for k, v in f.arguments.items() if v is not None},
    "principal": lambda f: f.principal,
    "roles": lambda f: list(f.roles),
    "currency": lambda f: f.currency,
    "amount_minor": lambda f: f.amount_minor,
    "moved_today_minor": lambda f: f.moved_today_minor,
    "now": lambda f: f.now,
    **{role: _account(role) for role in ACCOUNT_ROLES},
}
