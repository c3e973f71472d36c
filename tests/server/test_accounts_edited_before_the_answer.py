"""Accounts edited behind the server's back between a transfer's question and its answer (both backends).

The approver was shown the amount in a currency and who owns each account. If the database is edited so
that the same arguments would now move another currency, or pay someone else, the answer must run nothing:
the approval is bound to what the question showed, as a close is bound to the balance it sweeps.
"""

import pytest
from sqlalchemy import text

from mcp_server.storage.gate_store import SqlGateStore
from mcp_server.tools import ledger_actions
from policy.action import Call
from policy.gate import Gate
from policy.loader import load_policy
from policy.results import Status
from policy.verdict import Verdict, VerdictKind
from tests.server.harness import Harness
from tests.support import TEST_POLICY


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("UPDATE accounts SET currency = 'EUR' WHERE id IN (:source, :target)", "$25.00 (USD) when asked"),
        ("UPDATE accounts SET owner = 'Mallory' WHERE id = :target", "Mallory"),
        ("UPDATE accounts SET owner = 'Mallory' WHERE id = :source", "Mallory"),
    ],
)
def test_a_transfer_whose_accounts_changed_since_the_question_runs_nothing(
    ledger_harness: Harness, edit: str, says: str
) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    source, target = ledger_harness.open_account("100", "Ada"), ledger_harness.open_account("0", "Ben")
    args = {"from_account": source, "to_account": target, "amount": "25"}
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None and "$25.00 (USD)" in opening.approval.question
    assert "(Ben)" in opening.approval.question

    ledger_harness.db.run(lambda conn: conn.execute(text(edit), {"source": source, "target": target}))
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is not Status.EXECUTED, result
    assert says in result.message
    assert (ledger_harness.balance(source), ledger_harness.balance(target)) == (100_00, 0)
    assert ledger_harness.events(opening.approval.ref) == ["requested", "approved", "failed"]


def test_bound_facts_rewritten_to_match_an_edited_ledger_run_nothing(ledger_harness: Harness) -> None:
    """The facts an approval binds are what its question showed: rewriting them to match what changed since
    (here a close's balance, grown by a deposit) must not make the answer sweep what nobody was shown."""
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(ledger_harness.db), ledger_actions(ledger_harness.ledger, policy), approval_ttl=60)
    account, target = ledger_harness.open_account("100", "Ada"), ledger_harness.open_account("0", "Ada")
    call = Call("close_account", gate.actions["close_account"].canonical({"account_id": account, "sweep_to": target}),
                "local")  # fmt: skip
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None and "$100.00" in opening.approval.question

    ledger_harness.ledger.deposit(account, "4900")
    edit = "UPDATE approvals SET bound_json = REPLACE(bound_json, '$100.00', '$5,000.00') WHERE ref = :ref"
    ledger_harness.db.run(lambda conn: conn.execute(text(edit), {"ref": opening.approval.ref}))  # type: ignore[union-attr]
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is not Status.EXECUTED, result
    assert (ledger_harness.balance(account), ledger_harness.balance(target)) == (5000_00, 0)
