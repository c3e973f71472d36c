"""An entitlement changed while an approved call waits for its accounts (PostgreSQL).

A settlement locks the accounts it moves money between, then decides on what the caller holds on them.
On PostgreSQL (READ COMMITTED) a statement reads as of its start: if the settlement's read of the
accounts waits for another transaction's lock, and an administrator revokes the caller's entitlement
meanwhile, that read must not decide on the entitlement as it was before the revocation was reported
done. Once `admin revoke` has returned, nothing the revoked grant allowed may run.
"""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate
from policy.loader import load_policy
from policy.results import GateResult, Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import SHIPPED_POLICY, postgres_schema

pytestmark = pytest.mark.postgres

ALICE, BOB = "ACC-001", "ACC-002"
WAIT_LIMIT = 20.0


@pytest.fixture
def bank() -> Iterator[Harness]:
    with postgres_schema("bankgate_entrace") as url:
        harness = Harness("memory", url, policy=SHIPPED_POLICY)
        harness.ledger.seed_demo()
        try:
            yield harness
        finally:
            harness.db.close()


def gate_of(bank: Harness) -> Gate:
    policy = load_policy(SHIPPED_POLICY)
    return Gate(policy, SqlGateStore(bank.db), ledger_actions(bank.ledger, policy), approval_ttl=60)


def waiting_behind(watcher: psycopg.Connection[Any], holder: psycopg.Connection[Any]) -> bool:
    """Whether some transaction waits for a lock `holder` holds."""
    rows = watcher.execute("SELECT pg_blocking_pids(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    return any(holder.info.backend_pid in blockers for (blockers,) in rows.fetchall())


def settled_while_held(bank: Harness, gate: Gate, call: Call, meanwhile: Callable[[], object]) -> GateResult:
    """Approve `call`'s question while another transaction holds ALICE's row, run `meanwhile` once the
    settlement waits for it, then let the settlement go on."""
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None, opening
    results: list[GateResult] = []
    with psycopg.connect(bank.db_url) as holder, psycopg.connect(bank.db_url, autocommit=True) as watcher:
        holder.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (ALICE,))
        settling = threading.Thread(target=lambda: results.append(gate.conclude(opening, Verdict(VerdictKind.APPROVE))))
        settling.start()
        for _ in range(int(WAIT_LIMIT / 0.02)):
            if waiting_behind(watcher, holder):
                break
            threading.Event().wait(0.02)
        else:
            pytest.fail("the settlement never waited for the held account")
        meanwhile()
        holder.commit()
        settling.join(WAIT_LIMIT)
    [result] = results
    return result


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("transfer_funds", {"from_account": ALICE, "to_account": BOB, "amount": "100"}),
        ("close_account", {"account_id": ALICE, "sweep_to": BOB}),
    ],
    ids=["transfer", "close"],
)
def test_an_owner_revoked_while_the_settlement_waits_moves_nothing(
    bank: Harness, tool: str, args: dict[str, str]
) -> None:
    gate = gate_of(bank)
    call = Call(tool, gate.actions[tool].canonical(args), "alice")
    admin = EntitlementAdmin(bank.db, "tester")

    result = settled_while_held(bank, gate, call, lambda: admin.revoke("alice", "owner", ALICE))

    assert result.status is not Status.EXECUTED, result
    assert (bank.balance(ALICE), bank.balance(BOB)) == (5_000_00, 250_00)
    assert bank.ledger.check_invariants() == []


def test_an_operator_role_revoked_while_the_settlement_waits_moves_nothing(bank: Harness) -> None:
    gate = gate_of(bank)
    args = {"from_account": ALICE, "to_account": BOB, "amount": "100"}
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")  # the demo's operator
    admin = EntitlementAdmin(bank.db, "tester")

    result = settled_while_held(bank, gate, call, lambda: admin.revoke_role("local", "operator"))

    assert result.status is not Status.EXECUTED, result
    assert (bank.balance(ALICE), bank.balance(BOB)) == (5_000_00, 250_00)
