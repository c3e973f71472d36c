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


_ACCOUNT_FIELDS: dict[str, Callable[[AccountFacts], Any]] = {
    "id": lambda a: a.id,
    "owner": lambda a: a.owner,
    "status": lambda a: a.status,
    "currency": lambda a: a.currency,
    "balance_minor": lambda a: a.balance_minor,
    "access": lambda a: list(a.access),
}
"""Each field of `AccountFacts.as_cel`, bound alone (for a condition that reads only some)."""


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


def _account(role: str) -> Callable[[CallFacts], dict[str, Any] | None]:
    def bind(facts: CallFacts) -> dict[str, Any] | None:
        account = facts.accounts.get(role)
        return account.as_cel() if account is not None else None

    return bind


def binder(name: str, read: Collection[str] | None = None) -> Callable[[CallFacts], Any]:
    """What variable `name` is bound to (an account not in the call: null); with `read`, a map cut down to
    those of its fields it has.

    Made once per condition (`policy.expressions.Condition`): an account read only as `account.access`
    is bound as just that field, never converted whole and then cut."""
    whole = _BINDERS[name]
    if read is None:
        return whole
    if name in ACCOUNT_ARGUMENTS:
        fields = {field: _ACCOUNT_FIELDS[field] for field in read if field in _ACCOUNT_FIELDS}.items()

        def bind_account(facts: CallFacts) -> dict[str, Any] | None:
            account = facts.accounts.get(name)
            return {field: value(account) for field, value in fields} if account is not None else None

        return bind_account

    def bind_cut(facts: CallFacts) -> Any:
        value = whole(facts)
        return {key: value[key] for key in read if key in value} if isinstance(value, dict) else value

    return bind_cut


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

ROLES = ("operator",)
"""What `roles` can hold: a principal's roles on every account (granted, or carried by a token's scope)."""

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
