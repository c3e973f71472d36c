"""A human, not the model, answers every approval: end to end on both wire paths, streamed and not."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from agent_host.approvers import DenyApprover
from agent_host.emulator import Emulator
from agent_host.settings import McpProtocol, Transport

from .helpers import balance, host_for, scripted

PATHS = [
    pytest.param("sdk", False, "auto", id="sdk"),
    pytest.param("sdk", True, "auto", id="sdk-stream"),
    pytest.param("rest", False, "auto", id="rest"),
    pytest.param("rest", True, "legacy", id="rest-stream-legacy-mcp"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("transport", "stream", "protocol"), PATHS)
async def test_approve_reject_cancel_and_deny(
    emulator: Emulator, tmp_path: Path, agent_name: str, transport: Transport, stream: bool, protocol: McpProtocol
) -> None:
    approver = scripted("approve note='paid rent'", "reject note='too much'", "cancel")
    async with host_for(
        emulator, tmp_path, approver, agent_name, transport=transport, stream=stream, mcp_protocol=protocol
    ) as host:
        assert host.link.protocol_version == ("2025-11-25" if protocol == "legacy" else "2026-07-28")
        conversation = host.conversation()

        approved = await conversation.send("Transfer $100 from ACC-001 to ACC-002.")
        rejected = await conversation.send("Transfer $200 from ACC-002 to ACC-003.")
        cancelled = await conversation.send("Close ACC-003 and sweep to ACC-001.")
        host.desk.approver = DenyApprover()
        denied = await conversation.send("Transfer $50 from ACC-001 to ACC-003.")

        statuses = [turn.results[0][1].output["status"] for turn in (approved, rejected, cancelled, denied)]
        assert statuses == ["executed", "rejected", "cancelled", "rejected"]
        assert "Done: the transfer of 100 from ACC-001 to ACC-002 is complete." in approved.text
        assert "was rejected by the operator; nothing was done." in rejected.text
        assert "The closure of ACC-003 was cancelled; nothing was done." in cancelled.text
        assert "was rejected by the operator" in denied.text
        assert [answer.label for _, answer in host.desk.records] == ["approved", "rejected", "cancelled", "declined"]
        assert [q.message.splitlines()[0] for q, _ in host.desk.records] == [
            "Approval required: transfer_funds",
            "Approval required: transfer_funds",
            "Approval required: close_account",
            "Approval required: transfer_funds",
        ]
        # Only the approved transfer moved money; the closure did not happen.
        assert [await balance(host, a) for a in ("ACC-001", "ACC-002", "ACC-003")] == [
            Decimal("4900.00"),
            Decimal("350.00"),
            Decimal("120.00"),
        ]
        # The model gets the outcome and its reference, never the question or the form.
        assert approved.results[0][1].output["approval_ref"].startswith("APR-")
        for turn in (approved, rejected, cancelled, denied):
            sent = json.dumps([result.output for _, result in turn.results])
            assert "Approval required" not in sent and "confirmation field" not in sent
        for turn in (approved, rejected, cancelled, denied):
            assert all(reply.events.total() > 0 for reply in turn.replies) is stream
        if stream:
            first = approved.replies[0].events
            assert first["response.function_call_arguments.delta"] >= 2 and first["response.completed"] == 1
            assert approved.replies[-1].events["response.output_text.delta"] >= 2
    shown = host.display.text  # type: ignore[attr-defined]
    assert "Approval question from the MCP server — answered by: scripted" in shown
    assert "approval: declined (no terminal to ask a human (deny approver))" in shown


@pytest.mark.anyio
async def test_close_needs_the_typed_confirmation(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    approver = scripted("approve confirm=ACC-001", "approve note='closing'")
    async with host_for(emulator, tmp_path, approver, agent_name) as host:
        conversation = host.conversation()
        mistyped = await conversation.send("Close ACC-003 and sweep to ACC-001.")
        typed = await conversation.send("Close ACC-003 and sweep to ACC-001.")

        assert mistyped.results[0][1].output["status"] == "rejected"
        assert "confirmation did not match" in mistyped.results[0][1].output["message"]
        assert typed.results[0][1].output["status"] == "executed"
        assert [answer.confirmation for _, answer in host.desk.records] == ["ACC-001", "ACC-003"]
        assert await balance(host, "ACC-001") == Decimal("5120.00")
        closed = await host.link.call("get_account_balance", {"account_id": "ACC-003"})
        assert closed.output["error"]["code"] == "account_closed"


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", ["auto", "legacy"])
async def test_a_host_with_nobody_to_ask_is_denied_by_the_server(
    emulator: Emulator, tmp_path: Path, agent_name: str, protocol: McpProtocol
) -> None:
    """The deny approver declares no elicitation capability: the server denies, as no human could be asked
    (before, the approver declined the question, which the audit log recorded as a person's rejection)."""
    async with host_for(emulator, tmp_path, DenyApprover(), agent_name, mcp_protocol=protocol) as host:
        turn = await host.conversation().send("Transfer $50 from ACC-001 to ACC-003.")

        output = turn.results[0][1].output
        assert output["status"] == "denied", output
        assert "No human can be asked to approve it from this client" in output["message"]
        assert host.desk.records == [], "no question reached the host"
        assert await balance(host, "ACC-001") == Decimal("5000.00")
