"""Idempotency keys belong to the principal who sent them: another caller presenting the same key (guessed,
or read off a log) with the same arguments must not be handed the first caller's stored outcome (its receipt
names balances the second may not see), nor join the first caller's pending question."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import APPROVE, ASK, SHIPPED_POLICY, first_round, keyed, outcome

pytestmark = pytest.mark.anyio

TRANSFER = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "10.00"}


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness("memory", f"sqlite:///{tmp_path / 'ledger.db'}", policy=SHIPPED_POLICY)
    harness.ledger.seed_demo()
    yield harness


async def test_another_principal_presenting_a_used_key_is_not_given_its_outcome(bank: Harness, mode: str) -> None:
    async with bank.client(ScriptedResponder(approve()), mode=mode, principal="alice") as alice:
        first = outcome(await alice.call_tool("transfer_funds", TRANSFER, meta=keyed("key-shared-1")))
    assert first["status"] == "executed"

    asked = ScriptedResponder(approve())
    async with bank.client(asked, mode=mode, principal="bob") as bob:
        second = outcome(await bob.call_tool("transfer_funds", TRANSFER, meta=keyed("key-shared-1")))

    assert second != first
    assert second["status"] == "failed" and "balance" not in str(second), second
    assert bank.balance("ACC-001") == 500000 - 1000


async def test_another_principal_presenting_a_pending_key_neither_sees_nor_answers_its_question(
    bank: Harness,
) -> None:
    async with bank.client(ScriptedResponder(approve()), principal="alice") as alice:
        pending = await first_round(alice, "transfer_funds", TRANSFER, meta=keyed("key-shared-2"))

        asked = ScriptedResponder(approve())
        async with bank.client(asked, principal="bob") as bob:
            stranger = outcome(await bob.call_tool("transfer_funds", TRANSFER, meta=keyed("key-shared-2")))
        assert stranger["status"] == "failed" and asked.questions == [], stranger

        answered = await alice.session.call_tool(
            "transfer_funds",
            TRANSFER,
            meta=keyed("key-shared-2"),
            input_responses={ASK: APPROVE},
            request_state=pending.request_state,
        )
    assert outcome(answered)["status"] == "executed"
    assert bank.balance("ACC-001") == 500000 - 1000
