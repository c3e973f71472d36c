"""An idempotency key's stored outcome deleted behind the server's back (in memory and on PostgreSQL).

The key's row is what a retry finds; the ledger's `transactions.idempotency_key` (UNIQUE) is the second
line of defence the schema promises: one key never produces two movements, even if the first line is
gone. A retry after the row was deleted must move nothing more, allowed or approved; with both gone, the
records (each stating its key) make `audit verify` name the key run twice.
"""

import pytest
from sqlalchemy import text

from mcp_server.cli.main import main
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import keyed

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("amount", "answers"), [("0.50", 0), ("30", 2)])
async def test_a_key_whose_stored_outcome_was_deleted_moves_money_once(
    harness: Harness, mode: str, amount: str, answers: int
) -> None:
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": amount}
    responder = ScriptedResponder(*[approve()] * answers)
    async with harness.client(responder, mode=mode) as client:
        first = await client.call_tool("transfer_funds", args, meta=keyed(f"once-{source}"))
        assert first.structured_content is not None and first.structured_content["status"] == "executed"
        harness.db.run(lambda conn: conn.execute(text("DELETE FROM idempotency_keys")))
        again = await client.call_tool("transfer_funds", args, meta=keyed(f"once-{source}"))

    assert again.structured_content is not None and again.structured_content["status"] != "executed"
    moved = harness.balance(target)
    assert moved == harness.ledger.balance(target).balance_minor == round(float(amount) * 100), "moved once"
    assert harness.ledger.check_invariants() == []


@pytest.mark.parametrize(("amount", "answers"), [("0.50", 0), ("30", 2)])
async def test_a_key_run_again_after_both_its_lines_were_edited_away_is_named(
    harness: Harness, capsys: pytest.CaptureFixture[str], amount: str, answers: int
) -> None:
    """Both lines of defence edited away: the key's stored outcome deleted and its ledger transaction's key cleared.
    Nothing left in the database ties the retry to the first run, so it moves the money again; the records say
    which key each run was under, so `audit verify` names the key run twice and the transaction's key cleared."""
    source, target = harness.open_account("100"), harness.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": amount}
    key = f"twice-{source}"
    async with harness.client(ScriptedResponder(*[approve()] * answers)) as client:
        await client.call_tool("transfer_funds", args, meta=keyed(key))
        held = text("SELECT id FROM transactions WHERE idempotency_key LIKE :k")  # the key as scoped to its caller
        transaction = harness.db.read(lambda conn: conn.execute(held, {"k": f"%{key}"}).scalar_one())
        harness.db.run(
            lambda conn: (
                conn.execute(text("DELETE FROM idempotency_keys WHERE key LIKE :k"), {"k": f"%{key}"}),
                conn.execute(text("UPDATE transactions SET idempotency_key = NULL WHERE id = :t"), {"t": transaction}),
            )
        )
        again = await client.call_tool("transfer_funds", args, meta=keyed(key))
    assert again.structured_content is not None and again.structured_content["status"] == "executed", "ran again"

    assert main(["audit", "verify", "--db", harness.db_url]) == 1
    out = capsys.readouterr().out
    assert f"{key}, but ledger transaction {transaction} holds none (edited)" in out, out
    assert f"{key} again, after record" in out, out
