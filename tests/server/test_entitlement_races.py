"""An entitlement changed while an approved call waits for its accounts (PostgreSQL).

A settlement locks the accounts it moves money between, then decides on what the caller holds on them.
On PostgreSQL (READ COMMITTED) a statement reads as of its start: if the settlement's read of the
accounts waits for another transaction's lock, and an administrator revokes the caller's entitlement
meanwhile, that read must not decide on the entitlement as it was before the revocation was reported
done. Once `admin revoke` has returned, nothing the revoked grant allowed may run.
"""

import threading
from collections.abc import Callable, Iterator

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
from tests.server.interleave import WAIT_LIMIT, hold_audit_writes, until_waiting_behind
from tests.support import SHIPPED_POLICY, postgres_schema

pytestmark = pytest.mark.postgres

ALICE, BOB = "ACC-001", "ACC-002"


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
        until_waiting_behind(watcher, holder, "the settlement never waited for the held account")
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


def test_a_revocation_made_while_a_settlement_holds_its_accounts_waits_for_it(bank: Harness) -> None:
    """The other order: the settlement read the owner's grant and has not committed; the revocation waits until
    it has, so `admin revoke` never returns before a movement the revoked grant allowed."""
    gate = gate_of(bank)
    args = {"from_account": ALICE, "to_account": BOB, "amount": "100"}
    opening = gate.open(Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "alice"),
                        human_reachable=True)  # fmt: skip
    admin = EntitlementAdmin(bank.db, "tester")
    results: dict[str, object] = {}  # by name: the two threads may return in either order once both may run
    with psycopg.connect(bank.db_url) as holder, psycopg.connect(bank.db_url, autocommit=True) as watcher:
        hold_audit_writes(holder)  # the settlement waits at its last statement, its locks taken
        settling = threading.Thread(
            target=lambda: results.update(settled=gate.conclude(opening, Verdict(VerdictKind.APPROVE)))
        )
        settling.start()
        settlement = until_waiting_behind(watcher, holder, "the settlement never reached its audit records")
        revoking = threading.Thread(target=lambda: results.update(revoked=admin.revoke("alice", "owner", ALICE)))
        revoking.start()  # its audit record would wait for the holder too: it must wait for the settlement first
        until_waiting_behind(watcher, settlement, "the revocation did not wait for the settlement holding the grant")
        holder.rollback()
        settling.join(WAIT_LIMIT)
        revoking.join(WAIT_LIMIT)
    settled, revoked = results["settled"], results["revoked"]
    assert isinstance(settled, GateResult) and settled.status is Status.EXECUTED, settled
    assert revoked is True
    assert (bank.balance(ALICE), bank.balance(BOB)) == (4_900_00, 350_00)
