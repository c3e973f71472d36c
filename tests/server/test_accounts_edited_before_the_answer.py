"""Accounts edited behind the server's back between a transfer's question and its answer (both backends).

The approver was shown the amount in a currency and who owns each account. If the database is edited so
that the same arguments would now move another currency, or pay someone else, the answer must run nothing:
the approval is bound to what the question showed, as a close is bound to the balance it sweeps.
"""

from collections.abc import Iterator
from pathlib import Path

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
from tests.support import BACKENDS, TEST_POLICY, postgres_schema


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "postgresql":
        with postgres_schema("bankgate_accounts_edited") as url:
            harness = Harness("memory", url)
            try:
                yield harness
            finally:
                harness.db.close()
    else:
        yield Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("UPDATE accounts SET currency = 'EUR' WHERE id IN (:source, :target)", "$25.00 (USD) when asked"),
        ("UPDATE accounts SET owner = 'Mallory' WHERE id = :target", "Mallory"),
        ("UPDATE accounts SET owner = 'Mallory' WHERE id = :source", "Mallory"),
    ],
)
def test_a_transfer_whose_accounts_changed_since_the_question_runs_nothing(
    harness: Harness, edit: str, says: str
) -> None:
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(harness.db), ledger_actions(harness.ledger, policy), approval_ttl=60)
    source, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ben")
    args = {"from_account": source, "to_account": target, "amount": "25"}
    call = Call("transfer_funds", gate.actions["transfer_funds"].canonical(args), "local")
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None and "$25.00 (USD)" in opening.approval.question
    assert "(Ben)" in opening.approval.question

    harness.db.run(lambda conn: conn.execute(text(edit), {"source": source, "target": target}))
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is not Status.EXECUTED, result
    assert says in result.message
    assert (harness.balance(source), harness.balance(target)) == (100_00, 0)
    assert harness.events(opening.approval.ref) == ["requested", "approved", "failed"]


def test_bound_facts_rewritten_to_match_an_edited_ledger_run_nothing(harness: Harness) -> None:
    """The facts an approval binds are what its question showed: rewriting them to match what changed since
    (here a close's balance, grown by a deposit) must not make the answer sweep what nobody was shown."""
    policy = load_policy(TEST_POLICY)
    gate = Gate(policy, SqlGateStore(harness.db), ledger_actions(harness.ledger, policy), approval_ttl=60)
    account, target = harness.open_account("100", "Ada"), harness.open_account("0", "Ada")
    call = Call("close_account", gate.actions["close_account"].canonical({"account_id": account, "sweep_to": target}),
                "local")  # fmt: skip
    opening = gate.open(call, human_reachable=True)
    assert opening.approval is not None and "$100.00" in opening.approval.question

    harness.ledger.deposit(account, "4900")
    edit = "UPDATE approvals SET bound_json = REPLACE(bound_json, '$100.00', '$5,000.00') WHERE ref = :ref"
    harness.db.run(lambda conn: conn.execute(text(edit), {"ref": opening.approval.ref}))  # type: ignore[union-attr]
    result = gate.conclude(opening, Verdict(VerdictKind.APPROVE))

    assert result.status is not Status.EXECUTED, result
    assert (harness.balance(account), harness.balance(target)) == (5000_00, 0)
