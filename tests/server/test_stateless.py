"""Stateless HTTP (for replicas): 2026-07-28 clients can approve; 2025-11-25 clients are refused."""

from collections.abc import Iterator

import pytest

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness, HttpServer

pytestmark = pytest.mark.anyio

KEYS = "k" * 32 + "," + "old-key-" + "o" * 32


@pytest.fixture(scope="module")
def stateless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    url = f"sqlite:///{tmp_path_factory.mktemp('stateless') / 'ledger.db'}"
    Harness("setup", url)
    server = HttpServer(url, "--stateless", env={"BANKGATE_REQUEST_STATE_KEYS": KEYS})
    yield Harness("http", url, server)
    server.stop()


async def test_modern_clients_approve_over_stateless_http(stateless: Harness) -> None:
    source, target = stateless.open_account("50"), stateless.open_account("0")
    responder = ScriptedResponder(approve())
    async with stateless.client(responder, mode="auto") as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": "20"}
        )

    assert result.structured_content is not None and result.structured_content["status"] == "executed"
    assert len(responder.questions) == 1 and stateless.balance(target) == 2000


async def test_legacy_clients_cannot_answer_a_form_and_are_sent_to_the_desk(stateless: Harness) -> None:
    """No back-channel for a 2025-11-25 form: the approval waits at the desk (policy channel `any`)."""
    source, target = stateless.open_account("50"), stateless.open_account("0")
    responder = ScriptedResponder(approve())
    async with stateless.client(responder, mode="legacy") as client:
        balance = await client.call_tool("get_account_balance", {"account_id": source})
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": "20"}
        )

    assert balance.structured_content is not None and balance.structured_content["formatted"] == "$50.00"
    assert result.structured_content is not None and result.structured_content["status"] == "pending_approval"
    assert "/desk/approvals/" in result.structured_content["approval_url"]
    assert responder.questions == [] and stateless.balance(source) == 5000
