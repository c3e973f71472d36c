"""What the gate needs from a tool: the call, what it would do, and how to do it.

The server implements one `Action` per tool over its ledger; the gate decides whether and
when `execute` runs, always inside the transaction that settles the decision.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from policy.canonical import digest
from policy.facts import AccountFacts
from policy.results import Refusal
from policy.store import GateTx

CHANGED_SINCE_APPROVAL = "changed_since_approval"
"""The code of a settlement refused because the facts the approval is bound to changed."""


@dataclass(frozen=True)
class Call:
    """One tool call, with arguments already validated and in canonical form."""

    tool: str
    arguments: Mapping[str, Any]
    principal: str
    idempotency_key: str | None = None
    roles: tuple[str, ...] = ()
    """Roles the caller's credentials carry for this call alone (e.g. from an OAuth token's scopes),
    on top of those the server grants the principal: part of what an approval is bound to."""

    @cached_property
    def request_digest(self) -> str:
        """What an idempotency key is bound to: the same key with another request is a conflict
        (computed once per call: each of its transactions recalls or stores the key)."""
        return digest({"tool": self.tool, "arguments": self.arguments})

    def binding(self, policy_version: str) -> str:
        """What an approval is bound to: exactly this call, by this caller with these roles, under this policy."""
        return digest(
            {
                "tool": self.tool,
                "arguments": self.arguments,
                "principal": self.principal,
                "roles": sorted(self.roles),
                "policy_version": policy_version,
                "idempotency_key": self.idempotency_key,
            }
        )


@dataclass(frozen=True)
class Inspection:
    """What the call would do, read from the server's state (never from the model's prose)."""

    effect: tuple[str, ...]
    """Lines describing the exact effect, for the approver: amounts, accounts, owners, balance after."""
    accounts: Mapping[str, AccountFacts | None] = field(default_factory=dict)
    currency: str = "USD"
    minor_exponent: int = 2
    amount_minor: int = 0
    roles: tuple[str, ...] = ()
    """The caller's principal-wide roles, read in the same transaction as the accounts."""
    bound: Mapping[str, str] = field(default_factory=dict)
    """Facts the approval is bound to beyond the arguments (label -> value, as the question shows
    them), e.g. the balance a close sweeps: if they differ when the answer settles, nothing runs."""

    def changed_since(self, shown: Mapping[str, str]) -> Refusal | None:
        """Why this inspection no longer matches the facts an approver was shown (None if it does)."""
        if dict(shown) == dict(self.bound):
            return None
        changes = "; ".join(
            f"{label}: {shown.get(label, 'not shown')} when asked, {self.bound.get(label, 'none')} now"
            for label in sorted(set(shown) | set(self.bound))
            if shown.get(label) != self.bound.get(label)
        )
        return Refusal(
            CHANGED_SINCE_APPROVAL,
            f"What was approved has changed since the question was asked ({changes}); nothing was done. "
            "Call again to be asked about the current state.",
        )


@dataclass(frozen=True)
class Done:
    """An executed effect: structured details for programs, one sentence for people and models."""

    details: Mapping[str, Any]
    summary: str


class Action(Protocol):
    name: str
    arguments: tuple[str, ...]
    """Every argument name the tool takes (policies may ask the approver to type one back)."""
    read_only: bool
    """Read-only calls that the policy allows are not audited: they change nothing."""

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated arguments in one canonical form (raises `Refusal` naming the bad field)."""

    def expect(self, tx: GateTx[Any], call: Call) -> None:
        """Announce the reads `inspect` will make in `tx`, before anything is written: a store that batches
        reads sends them with its next round trip. Doing nothing is always correct."""

    def inspect(self, tx: GateTx[Any], call: Call) -> Inspection:
        """Check the call could run now (reading `tx.ledger`) and describe it (raises `Refusal` if not)."""

    def execute(self, tx: GateTx[Any], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        """Perform the effect through `tx.ledger`, right after `inspection` was taken in the same transaction.

        The ledger re-checks balances and statuses on the rows it changes (raises `Refusal`).
        `approval_ref`: the approval this execution settles (`None` for a call the policy allowed); a ledger
        records it with the movement, so one approval never moves money twice, whatever its row says.
        """
