"""A bug or a failure nobody planned for, inside a call: the caller gets a clean refusal with no internals in
it, nothing runs, and the operator's log has the traceback."""

import logging
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from mcp_server import edge
from mcp_server.ledger.books import Ledger
from mcp_server.tools.transfer import TransferAction
from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness
from tests.support import outcome

pytestmark = pytest.mark.anyio

INTERNALS = "SELECT balance_minor FROM accounts -- /srv/bankgate/ledger.db"
"""What an unexpected exception's text may hold: SQL, a file path."""


def crash(*_: Any, **__: Any) -> Any:
    raise RuntimeError(INTERNALS)


@pytest.mark.parametrize("where", ["deciding", "settling"])
async def test_a_crash_in_the_gate_is_a_clean_denial_and_moves_nothing(
    harness: Harness, mode: str, where: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source, target = harness.open_account("100.00"), harness.open_account("5.00")
    if where == "deciding":
        monkeypatch.setattr(TransferAction, "inspect", crash)
    else:
        monkeypatch.setattr(Ledger, "post_transfer_in", crash)
    async with harness.client(ScriptedResponder(approve()), mode=mode) as client:
        result = await client.call_tool(
            "transfer_funds", {"from_account": source, "to_account": target, "amount": "12.50"}
        )
    body = outcome(result)
    assert body["status"] == "denied" and "internal error; nothing was done" in body["message"]
    assert INTERNALS not in str(result)
    assert harness.balance(source) == 10000 and harness.balance(target) == 500
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert logged and INTERNALS in str(logged[0].exc_info[1])  # type: ignore[index]


async def test_a_crash_before_the_tool_runs_is_an_internal_error_without_its_text(
    harness: Harness, mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The 2025-11-25 dispatcher sends an unexpected exception's text as the error message (2026-07-28's
    sends 'Internal server error'): a crash in the server's middleware must not reach the caller so."""
    source, target = harness.open_account("100.00"), harness.open_account("5.00")

    monkeypatch.setattr(edge, "checked_arguments", crash)
    async with harness.client(mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("transfer_funds", {"from_account": source, "to_account": target, "amount": "1"})
    assert INTERNALS not in str(caught.value) and caught.value.error.message == "Internal server error"
    assert any(r.exc_info and INTERNALS in str(r.exc_info[1]) for r in caplog.records)
