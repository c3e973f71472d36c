"""The host's MCP link when the server restarts or dies: the next call opens a new session (launching a stdio server
anew) instead of every later call failing until the host is restarted."""

from __future__ import annotations

import os
import signal
from decimal import Decimal
from pathlib import Path

import pytest

from agent_host.approvers import Answer, Question
from agent_host.emulator import Emulator
from agent_host.settings import McpProtocol

from .helpers import balance, free_port, host_for, http_mcp_server, scripted

TOKEN = "tester-token-0123456789abcdef"
PROTOCOLS = pytest.mark.parametrize("protocol", ["auto", "legacy"])  # 2026-07-28 rounds; 2025-11-25 inline


@pytest.mark.anyio
@PROTOCOLS
async def test_the_host_reconnects_to_an_http_server_that_restarted(
    emulator: Emulator, tmp_path: Path, agent_name: str, protocol: McpProtocol
) -> None:
    port = free_port()
    approver = scripted("approve", "approve")
    with http_mcp_server(tmp_path, TOKEN, port) as (url, server):
        async with host_for(
            emulator, tmp_path, approver, agent_name, mcp_url=url, mcp_token=TOKEN, mcp_protocol=protocol
        ) as host:
            conversation = host.conversation()
            await conversation.send("Transfer $20 from ACC-001 to ACC-002.")
            server.kill()
            server.wait()
            down = await host.link.call("get_account_balance", {"account_id": "ACC-001"})
            assert down.output["error"]["code"] == "tool_unavailable"
            with http_mcp_server(tmp_path, TOKEN, port):  # the same server, restarted on its ledger
                after = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
                assert await balance(host, "ACC-001") == Decimal("4950.00")

    [(_, result)] = after.results
    assert result.output["status"] == "executed", result.output
    assert len(host.desk.records) == 2


@pytest.mark.anyio
@PROTOCOLS
async def test_a_stdio_server_that_died_is_launched_again_for_the_next_call(
    emulator: Emulator, tmp_path: Path, agent_name: str, protocol: McpProtocol
) -> None:
    async with host_for(emulator, tmp_path, scripted("approve"), agent_name, mcp_protocol=protocol) as host:
        [child] = _children()
        os.kill(child, signal.SIGKILL)
        conversation = host.conversation()
        after = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
        assert await balance(host, "ACC-001") == Decimal("4970.00")
        [relaunched] = _children()
    assert relaunched != child
    [(_, result)] = after.results
    assert result.output["status"] == "executed", result.output
    assert _children() == [], "every server the host launched is reaped"


def _children() -> list[int]:
    """This process's live (not zombie) children: the stdio servers the host launched."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry))
    return found


class KillingApprover:
    """Kills the stdio server while its first question is open, then approves every question."""

    name = "killing"

    def __init__(self) -> None:
        self.asked = 0

    async def answer(self, question: Question) -> Answer:
        self.asked += 1
        if self.asked == 1:
            [child] = _children()
            os.kill(child, signal.SIGKILL)
        return Answer("accept", True, question.confirmation_value)


@pytest.mark.anyio
@PROTOCOLS
async def test_a_call_whose_server_died_under_its_question_is_asked_again_and_runs_once(
    emulator: Emulator, tmp_path: Path, agent_name: str, protocol: McpProtocol
) -> None:
    """The connection drops with the call in flight: whether it ran is not known to the host, so it sends the call
    again on a new server under the same idempotency key, which the server runs at most once."""
    approver = KillingApprover()
    async with host_for(emulator, tmp_path, approver, agent_name, mcp_protocol=protocol) as host:
        turn = await host.conversation().send("Transfer $30 from ACC-001 to ACC-002.")
        assert await balance(host, "ACC-001") == Decimal("4970.00"), "exactly once"
    [(_, result)] = turn.results
    assert result.output["status"] == "executed", result.output
    assert approver.asked == 2, "the new server asked again: the first answer never reached a server"
