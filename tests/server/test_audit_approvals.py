"""`audit verify` holds the approvals table to the signed records of each approval (both backends).

Each approval is asked in the transaction of its `requested` record and settled in the transaction of
its one settling record (`executed`, `rejected`, ...), so a database writer without the key who resets
an approval to pending (to run it again), rewrites its status, or edits what it asked is named, as is a
settling record deleted before the sequencer chained it.
"""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mcp_server.audit.reader import verify
from mcp_server.audit.sequencer import Sequencer
from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate, Opening
from policy.loader import load_policy
from policy.results import Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import TEST_POLICY

RESET = "UPDATE approvals SET status = 'pending', pending_binding = ref, decided_at = NULL, outcome_json = NULL"


def gate_on(harness: Harness) -> Gate:
    policy = load_policy(TEST_POLICY)
    return Gate(policy, SqlGateStore(harness.db), ledger_actions(harness.ledger, policy), approval_ttl=60)


def asked(harness: Harness, gate: Gate) -> tuple[Call, Opening]:
    args = {"from_account": harness.open_account("100"), "to_account": harness.open_account("0"), "amount": "25"}
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None
    return call, opening


def edit(harness: Harness, statement: str, ref: str) -> None:
    harness.db.run(lambda conn: conn.execute(text(statement + " WHERE ref = :ref"), {"ref": ref}))


def findings(harness: Harness, *, chain: bool = True) -> list[str]:
    sequencer = Sequencer(harness.db, SqlGateStore(harness.db).audit)
    return [str(f) for f in verify(harness.db, sequencer=sequencer if chain else None).findings]


def test_an_approval_reset_to_pending_cannot_run_again_and_is_named(ledger_harness: Harness) -> None:
    """The approval's row is the first line; the ledger's unique `transactions.approval_ref` the second."""
    gate = gate_on(ledger_harness)
    call, first = asked(ledger_harness, gate)
    assert gate.conclude(first, Verdict(VerdictKind.APPROVE)).status is Status.EXECUTED
    assert first.approval is not None
    ref, target = first.approval.ref, call.arguments["to_account"]
    assert findings(ledger_harness) == []

    edit(ledger_harness, RESET, ref)  # behind the server's back: the approval looks unanswered again
    replay = gate.open(call, human_reachable=True, asked=first.approval.asked_digest)
    assert replay.approval is not None and replay.approval.ref == ref, "the reset row offers the approval again"
    with pytest.raises(IntegrityError):  # the settlement rolls back whole: `policy.mcp.round` answers a denial
        gate.conclude(replay, Verdict(VerdictKind.APPROVE))

    assert ledger_harness.balance(target) == 2500, "the approval moved the money once"
    assert ledger_harness.ledger.check_invariants() == []
    found = findings(ledger_harness)
    assert any(ref in f and "is pending, but record" in f for f in found), found


def test_each_approved_movement_names_its_approval(ledger_harness: Harness) -> None:
    gate = gate_on(ledger_harness)
    _, first = asked(ledger_harness, gate)
    executed = gate.conclude(first, Verdict(VerdictKind.APPROVE))
    assert executed.status is Status.EXECUTED and executed.details is not None and first.approval is not None
    moved = {"id": executed.details["transaction_id"]}
    named = ledger_harness.db.read(
        lambda c: c.execute(text("SELECT approval_ref FROM transactions WHERE id = :id"), moved).scalar_one()
    )
    assert named == first.approval.ref


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        (RESET, "is pending, but record"),
        ("UPDATE approvals SET status = 'rejected'", "is stored as rejected, but record"),
        ("UPDATE approvals SET arguments_json = REPLACE(arguments_json, '25', '99')", "its arguments"),
        ("UPDATE approvals SET question = question || ' (edited)'", "its question"),
        ("UPDATE approvals SET principal = 'mallory'", "its principal"),
    ],
)
def test_an_approval_edited_after_it_was_settled_is_named(ledger_harness: Harness, statement: str, says: str) -> None:
    gate = gate_on(ledger_harness)
    _, first = asked(ledger_harness, gate)
    assert gate.conclude(first, Verdict(VerdictKind.APPROVE)).status is Status.EXECUTED
    assert first.approval is not None
    edit(ledger_harness, statement, first.approval.ref)

    found = findings(ledger_harness)
    assert any(first.approval.ref in f and says in f for f in found), found


def test_a_settling_record_deleted_before_it_was_chained_is_named(ledger_harness: Harness) -> None:
    """The window between a commit and the sequencer (or a crash before it ran) holds unchained records."""
    gate = gate_on(ledger_harness)
    _, first = asked(ledger_harness, gate)
    assert gate.conclude(first, Verdict(VerdictKind.REJECT)).status is Status.REJECTED
    assert first.approval is not None
    ref = first.approval.ref
    unchained = "DELETE FROM audit_log WHERE seq IS NULL AND event = 'rejected' AND approval_ref = :r"
    ledger_harness.db.run(lambda c: c.execute(text(unchained), {"r": ref}))
    found = findings(ledger_harness)
    assert any(ref in f and "no record settles it" in f for f in found), found
