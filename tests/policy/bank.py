"""A small bank for unit tests of the gate: three actions over a `MemoryLedger`, and a policy for them."""

import time
from collections.abc import Callable, Mapping
from typing import Any

from policy.action import Action, Call, Done, Inspection
from policy.document import Policy
from policy.gate import Gate
from policy.loader import parse_policy
from policy.results import Refusal
from policy.store import GateTx
from policy.testing import MemoryGateStore, MemoryLedger
from policy.testing.memory_store import LedgerView
from tests.support import Clock

POLICY = """
[tools.balance]
default = "allow"

[tools.transfer]
default = "allow"

[[tools.transfer.rules]]
name = "large"
when = "amount_minor > minor(100)"
outcome = "require_approval"
reason = "Above 100.00 needs approval."

[[tools.transfer.rules]]
name = "ceiling"
when = "amount_minor > minor(1000)"
outcome = "deny"
reason = "Above 1,000.00 is refused."

[[tools.transfer.rules]]
name = "daily"
when = "moved_today_minor + amount_minor > minor(150)"
outcome = "deny"
reason = "At most 150.00 a day."

[tools.sweep]
default = "require_approval"
reason = "Sweeping an account needs approval."

[tools.broken]
default = "allow"
"""


class InMemory:
    """What every action here shares: its reads are in memory, so none is sent ahead."""

    def expect(self, tx: GateTx[LedgerView], call: Call) -> None:
        pass


class Balance(InMemory):
    name = "balance"
    arguments: tuple[str, ...] = ("account",)
    read_only = True

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arguments)

    def inspect(self, tx: GateTx[LedgerView], call: Call) -> Inspection:
        balance = tx.ledger.balance(call.arguments["account"])
        return Inspection((f"Balance of {call.arguments['account']}",), bound={"balance": str(balance)})

    def execute(self, tx: GateTx[LedgerView], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        balance = tx.ledger.balance(call.arguments["account"])
        return Done({"balance_minor": balance}, f"Balance: {balance}.")


class Transfer(InMemory):
    """Moves `amount` (minor units) between two accounts; refuses an overdraft."""

    name = "transfer"
    arguments: tuple[str, ...] = ("source", "target", "amount")
    read_only = False

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        """Seconds `execute` lingers before its transaction commits: widens the window in which two calls
        could both be judged on the total before either."""

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {"source": arguments["source"], "target": arguments["target"], "amount": int(arguments["amount"])}

    def inspect(self, tx: GateTx[LedgerView], call: Call) -> Inspection:
        source, target, amount = call.arguments["source"], call.arguments["target"], call.arguments["amount"]
        if tx.ledger.balance(source) < amount:
            raise Refusal("insufficient_funds", f"{source} cannot pay {amount}.", "amount")
        tx.ledger.balance(target)
        return Inspection((f"Move {amount} from {source} to {target}",), amount_minor=amount)

    def execute(self, tx: GateTx[LedgerView], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        source, target, amount = call.arguments["source"], call.arguments["target"], call.arguments["amount"]
        tx.ledger.set_balance(source, tx.ledger.balance(source) - amount)
        tx.ledger.set_balance(target, tx.ledger.balance(target) + amount)
        time.sleep(self.pause)
        return Done({"amount_minor": amount}, f"Moved {amount}.")


class Sweep(InMemory):
    """Empties `source` into `target`; the approval is bound to the balance the question showed."""

    name = "sweep"
    arguments: tuple[str, ...] = ("source", "target")
    read_only = False

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arguments)

    def inspect(self, tx: GateTx[LedgerView], call: Call) -> Inspection:
        balance = tx.ledger.balance(call.arguments["source"])
        tx.ledger.balance(call.arguments["target"])
        return Inspection((f"Sweep {balance}",), amount_minor=balance, bound={"balance to sweep": str(balance)})

    def execute(self, tx: GateTx[LedgerView], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        source, target = call.arguments["source"], call.arguments["target"]
        tx.ledger.set_balance(target, tx.ledger.balance(target) + tx.ledger.balance(source))
        tx.ledger.set_balance(source, 0)
        return Done({}, "Swept.")


class Broken(InMemory):
    """Writes, then fails: with `failure` a `Refusal` (a business refusal) or any other exception (a bug)."""

    name = "broken"
    arguments: tuple[str, ...] = ("account",)
    read_only = False

    def __init__(self, failure: Callable[[], Exception]) -> None:
        self.failure = failure

    def canonical(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return dict(arguments)

    def inspect(self, tx: GateTx[LedgerView], call: Call) -> Inspection:
        tx.ledger.balance(call.arguments["account"])
        return Inspection(("Break something",))

    def execute(self, tx: GateTx[LedgerView], call: Call, inspection: Inspection, approval_ref: str | None) -> Done:
        tx.ledger.set_balance(call.arguments["account"], 0)
        raise self.failure()


TTL = 60.0


def policy(text: str = POLICY) -> Policy:
    return parse_policy(text, source="bank.toml")


def bank(
    *actions: Action, balances: Mapping[str, int] | None = None, text: str = POLICY
) -> tuple[Gate, MemoryGateStore, Clock]:
    """A gate over a fresh in-memory store (accounts A: 1,000,000 and B, C: 0 minor units by default)."""
    store = MemoryGateStore(MemoryLedger(balances or {"A": 1_000_000, "B": 0, "C": 0}))
    clock = Clock()
    chosen = actions or (Balance(), Transfer(), Sweep())
    gate = Gate(policy(text), store, {a.name: a for a in chosen}, approval_ttl=TTL, clock=clock)
    return gate, store, clock


def transfer(amount: int, key: str | None = None, principal: str = "alice") -> Call:
    return Call("transfer", {"source": "A", "target": "B", "amount": amount}, principal, key)


def sweep(source: str = "A", target: str = "C", principal: str = "alice") -> Call:
    return Call("sweep", {"source": source, "target": target}, principal)


def balance(account: str = "A") -> Call:
    return Call("balance", {"account": account}, "alice")


def broken(key: str | None = None) -> Call:
    return Call("broken", {"account": "A"}, "alice", key)
