"""Function calls through MCP: retried calls move money once, and every call gets an answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_host.approvers import Answer, Question
from agent_host.conversation import Conversation, ResponsesTransport, Turn
from agent_host.emulator import Emulator, FaultConfig
from agent_host.errors import McpUnavailable, RateLimited
from agent_host.foundry.function_tools import FunctionCall, Toolbox
from agent_host.foundry.pending_keys import PendingKeys
from agent_host.foundry.response_reader import reply_from_response
from agent_host.mcp_link import HttpNotes, McpTarget, ToolResult, _http_client, connect
from tests.support import logged

from .helpers import (
    CapturedDisplay,
    HostileModel,
    balance,
    call_item,
    free_port,
    host_for,
    http_mcp_server,
    ledger_target,
    listing_server,
    message_item,
    scripted,
    settings_for,
)

TOKEN = "tester-token-0123456789abcdef"


@pytest.mark.anyio
async def test_a_retried_function_call_moves_money_once(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with host_for(emulator, tmp_path, scripted("approve"), agent_name) as host:
        first = reply_from_response(
            await host.transport.create(
                {"input": "Transfer $75 from ACC-001 to ACC-002.", "agent_reference": host.agent.reference()}
            )
        )
        [call] = first.calls

        # The same Foundry call run twice, as a host that crashed after the first run would retry it.
        once = await host.toolbox.run(call, host.toolbox.tools, PendingKeys())
        again = await host.toolbox.run(call, host.toolbox.tools, PendingKeys())

        assert once.output["status"] == again.output["status"] == "executed"
        assert once.output["approval_ref"] == again.output["approval_ref"]
        assert len(host.desk.records) == 1, "the retry must not ask the human again"
        assert await balance(host, "ACC-001") == Decimal("4925.00")
        assert await balance(host, "ACC-002") == Decimal("325.00")
        # The call is answered once, and the chain goes on.
        answered = await host.transport.create(
            {
                "input": [{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(once.output)}],
                "previous_response_id": first.response_id,
                "agent_reference": host.agent.reference(),
            }
        )
        assert "is complete" in reply_from_response(answered).text


@pytest.mark.anyio
async def test_a_failing_tool_is_still_answered(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    async with host_for(emulator, tmp_path, scripted(), agent_name, transport="rest") as host:
        conversation = host.conversation()
        both = await conversation.send("Transfer $9,999 from ACC-002 to ACC-001 and check the balance of ACC-003.")
        after = await conversation.send("What is the balance of ACC-002?")

    # Two parallel calls in one response, one failing: both answered in the same round.
    [(transfer, failed), (check, read)] = both.results
    assert (transfer.name, check.name, both.rounds) == ("transfer_funds", "get_account_balance", 1)
    assert failed.is_error and failed.output["error"]["code"] == "insufficient_funds"
    assert read.output["status"] == "executed"
    assert "failed:" in both.text and "(insufficient_funds)" in both.text
    assert "ACC-003 has a balance of $120.00." in both.text
    assert not host.desk.records, "a call that cannot succeed is refused before anyone is asked"
    assert after.text == "ACC-002 has a balance of $250.00."


class ThrottleThenApprove:
    """Approves, but first makes the emulator throttle every request, so sending the answer fails."""

    name = "throttle-then-approve"

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def answer(self, question: Question) -> Answer:
        self.emulator.faults.arm(FaultConfig(rate_limited=100, retry_after=0.01, target="responses"))
        return Answer("accept", True)


@pytest.mark.anyio
async def test_answers_the_service_did_not_take_are_sent_first_next_time(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    approver = ThrottleThenApprove(emulator)
    async with host_for(emulator, tmp_path, approver, agent_name, max_retries=1) as host:
        conversation = host.conversation()
        with pytest.raises(RateLimited):
            await conversation.send("Transfer $15 from ACC-001 to ACC-002.")
        emulator.faults.arm(FaultConfig())
        recovered = await conversation.send("What is the balance of ACC-001?")

        assert "Done: the transfer of 15 from ACC-001 to ACC-002 is complete." in recovered.replies[0].text
        assert recovered.text == "ACC-001 has a balance of $4,985.00."
        assert await balance(host, "ACC-001") == Decimal("4985.00")


@pytest.mark.anyio
async def test_the_round_limit_answers_calls_without_running_them(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    async with host_for(emulator, tmp_path, scripted("approve"), agent_name, max_rounds=0) as host:
        conversation = host.conversation()
        limited = await conversation.send("Transfer $10 from ACC-001 to ACC-002.")
        next_turn = await conversation.send("What is the balance of ACC-001?")

        assert limited.limited and not limited.results and not host.desk.records
        assert "Not executed: the host allows 0 tool round(s)" in limited.text
        assert "(round_limit)" in limited.text
        assert next_turn.limited and "Not executed" in next_turn.text
        assert await balance(host, "ACC-001") == Decimal("5000.00")
    assert "Stopped after 0 tool round(s) (--max-rounds)" in host.display.text  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_mcp_over_http_and_a_server_that_dies(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    with http_mcp_server(tmp_path, TOKEN) as (url, server):
        async with host_for(
            emulator, tmp_path, scripted("approve"), agent_name, mcp_url=url, mcp_token=TOKEN, transport="rest"
        ) as host:
            assert host.link.target.url == url
            conversation = host.conversation()
            moved = await conversation.send("Transfer $20 from ACC-001 to ACC-002.")
            assert moved.results[0][1].output["status"] == "executed"

            server.kill()
            server.wait()
            lost = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
            still = await conversation.send("What is the balance of ACC-001?")

    [(_, result)] = lost.results
    assert result.output["status"] == "failed" and result.output["error"]["code"] == "tool_unavailable"
    assert result.diagnostic and "transfer_funds" in result.diagnostic
    # 2026-07-28 keeps no session: the turn's listing found the server gone, so the call was known not to run
    assert "is gone and reconnecting failed" in lost.text and "(tool_unavailable)" in lost.text
    assert still.results[0][1].output["error"]["code"] == "tool_unavailable"
    assert "MCP call transfer_funds not sent" in host.display.text  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_a_wrong_mcp_token_is_reported(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    refused = pytest.raises(McpUnavailable, match=r"refused the host's token \(HTTP 401\)")
    with http_mcp_server(tmp_path, TOKEN) as (url, _), refused as raised:
        async with host_for(emulator, tmp_path, scripted(), agent_name, mcp_url=url, mcp_token="x" * 20):
            pass
    assert "--mcp-token" in str(raised.value)


@pytest.mark.anyio
async def test_the_link_keeps_one_status_however_many_responses(tmp_path: Path) -> None:
    """The status noted to explain a refused connection is the latest only: a host serving for months makes
    millions of MCP requests over one link."""
    notes = HttpNotes()
    with http_mcp_server(tmp_path, TOKEN) as (url, _):
        async with _http_client(McpTarget(url=url, token=TOKEN), notes) as http:
            for _ in range(2000):
                await http.get(url.removesuffix("/mcp") + "/healthz")
            assert notes.status == 200
            await http.post(url, json={})
    assert notes.status is not None and notes.status >= 400


@pytest.mark.anyio
async def test_a_server_that_cannot_start_is_reported(emulator: Emulator, tmp_path: Path, agent_name: str) -> None:
    target = ledger_target(settings_for(emulator, agent_name), tmp_path)
    broken = type(target)(**{**target.__dict__, "db_url": "nosuch://ledger"})
    with pytest.raises(McpUnavailable, match="The MCP server did not start") as raised:
        async with host_for(emulator, tmp_path, scripted(), agent_name, target=broken):
            pass
    assert "unsupported database URL scheme 'nosuch'" in str(raised.value)


@pytest.mark.anyio
async def test_a_server_restarted_with_other_tools_is_what_the_model_sees_from_the_next_turn(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """The server comes back listing other tools: a call to one it no longer has is answered, not sent, and from the
    next turn the agent carries the new list (a tool added is called)."""
    port = free_port()
    with listing_server(port, "first") as (url, first):
        # legacy: a 2026-07-28 HTTP server keeps no session, so its restart is no reconnect
        settings: dict[str, Any] = {"mcp_url": url, "mcp_token": TOKEN, "mcp_protocol": "legacy"}
        async with host_for(emulator, tmp_path, scripted(), agent_name, **settings) as host:
            conversation = host.conversation()
            before = await conversation.send("Transfer $20 from ACC-001 to ACC-002.")
            first.kill()
            first.wait()
            with listing_server(port, "without_transfers"):
                removed = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
                added = await conversation.send("Close account ACC-003.")
                agent = host.agent
    [(_, executed)] = before.results
    assert executed.output["status"] == "executed", executed.output
    [(_, gone)] = removed.results
    assert gone.output["error"]["code"] == "unknown_tool", gone.output
    assert gone.output["message"] == (
        "Not executed: the tool's server does not offer transfer_funds (any more), so nothing was sent."
    )
    [(call, closed)] = added.results
    assert (call.name, closed.output["status"]) == ("close_account", "executed"), closed.output
    assert agent.created and agent.version == "2", "a version of the agent made from the new list"


@pytest.mark.anyio
async def test_a_call_is_not_sent_to_a_tool_whose_arguments_changed_on_reconnect(tmp_path: Path) -> None:
    """The server comes back with `transfer_funds` taking an argument more (a fee, 500 cents unless given): the call
    the model made for the tool as it was is not sent, so no fee the user was never told of is charged."""
    port = free_port()
    call = FunctionCall(
        "call_1", "transfer_funds", '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "30"}'
    )
    with listing_server(port, "first") as (url, first):
        async with connect(McpTarget(url=url, token=TOKEN, protocol="legacy"), None) as link:
            toolbox = Toolbox(link)
            first.kill()
            first.wait()
            with listing_server(port, "with_fees"):
                result = await toolbox.run(call, toolbox.tools, PendingKeys())
    assert result.output["error"]["code"] == "tool_changed", result.output
    assert result.output["message"] == (
        "Not executed: the tool's server changed the arguments transfer_funds takes since this call was made, "
        "so nothing was sent."
    )


@pytest.mark.anyio
async def test_the_next_turn_takes_up_the_tools_of_a_stateless_server_restarted_with_others(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """On 2026-07-28 over HTTP the server keeps no session, so its restart is never seen as a reconnect: the tools
    are listed again at the start of each turn, and the next turn's agent carries those of the release restarted."""
    port = free_port()
    with listing_server(port, "first") as (url, first):
        async with host_for(emulator, tmp_path, scripted(), agent_name, mcp_url=url, mcp_token=TOKEN) as host:
            assert host.link.protocol_version == "2026-07-28"
            conversation = host.conversation()
            before = await conversation.send("Close account ACC-003.")
            first.kill()
            first.wait()
            with listing_server(port, "without_transfers"):
                after = await conversation.send("Close account ACC-003.")
                agent = host.agent
    assert before.results == [], "the first release has no close_account"
    [(call, closed)] = after.results
    assert (call.name, closed.output["status"]) == ("close_account", "executed"), closed.output
    assert agent.created and agent.version == "2", "a version of the agent made from the new list"
    assert isinstance(host.display, CapturedDisplay)
    assert (
        "The MCP server now lists other tools (close_account, get_account_balance): from this request on, agent "
        f"{agent_name} v2 carries them." in host.display.text
    )


@pytest.mark.anyio
async def test_a_call_made_for_a_tool_a_stateless_server_changed_since_is_not_sent(tmp_path: Path) -> None:
    """A model still holding the tools it was given (an agent used as it is) calls `transfer_funds` the next turn,
    after the 2026-07-28 server restarted with it charging a fee unless told otherwise: the call is not sent."""
    port = free_port()
    arguments = '{"from_account": "ACC-001", "to_account": "ACC-002", "amount": "30"}'
    model = HostileModel(
        [call_item("call_1", "transfer_funds", arguments)],
        [message_item("Done.")],
        [call_item("call_2", "transfer_funds", arguments)],
    )
    with listing_server(port, "first") as (url, first):
        async with connect(McpTarget(url=url, token=TOKEN), None) as link:
            conversation = Conversation(model, Toolbox(link), {"name": "as-it-is"}, CapturedDisplay())
            before = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
            first.kill()
            first.wait()
            with listing_server(port, "with_fees"):
                after = await conversation.send("And again.")
    [(_, executed)] = before.results
    assert executed.output["message"] == "Moved 30 from ACC-001 to ACC-002.", executed.output
    [(_, refused)] = after.results
    assert refused.output["error"]["code"] == "tool_changed", refused.output


@pytest.mark.anyio
async def test_an_agent_used_as_it_is_has_its_calls_for_a_tool_since_changed_refused(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """An `--existing-agent` keeps the tools it was made with when the 2026-07-28 server restarts with
    `transfer_funds` charging a fee unless told otherwise: its call for the tool as it was is not sent."""
    port = free_port()
    with listing_server(port, "first") as (url, first):
        settings: dict[str, Any] = {"mcp_url": url, "mcp_token": TOKEN}
        async with host_for(emulator, tmp_path, scripted(), agent_name, **settings):
            pass  # makes the agent from the first release's tools
        async with host_for(emulator, tmp_path, scripted(), agent_name, existing_agent=True, **settings) as host:
            conversation = host.conversation()
            before = await conversation.send("Transfer $20 from ACC-001 to ACC-002.")
            first.kill()
            first.wait()
            with listing_server(port, "with_fees"):
                after = await conversation.send("Transfer $30 from ACC-001 to ACC-002.")
    [(_, executed)] = before.results
    assert executed.output["status"] == "executed", executed.output
    [(_, refused)] = after.results
    assert refused.output["error"]["code"] == "tool_changed", refused.output
    assert isinstance(host.display, CapturedDisplay)
    assert "is used as it is (--existing-agent / --agent-version), so a call to a tool" in host.display.text


async def _transfer_through_an_upgrade(tmp_path: Path, successor: str) -> tuple[ToolResult, Path]:
    """A 2026-07-28 server ("first") stops and drains, refusing every request 503 with Retry-After, and comes back
    as the `successor` edition: the host's keyed `transfer_funds` made for the first release's tool, sent meanwhile,
    and the ledger file where any server writes what it moved."""
    port = free_port()
    ledger = tmp_path / "moved.txt"
    arguments = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "30"}
    with ExitStack() as servers:
        url, first = servers.enter_context(listing_server(port, "first", ledger))
        async with connect(McpTarget(url=url, token=TOKEN), None) as link:
            [given] = [tool.input_schema for tool in link.tools if tool.name == "transfer_funds"]
            first.kill()
            first.wait()
            refusals = tmp_path / "draining.log"
            _, draining = servers.enter_context(listing_server(port, "draining", log=refusals))

            async def upgrade() -> None:
                await anyio.to_thread.run_sync(logged, refusals, "refused POST /mcp")  # the call was, and waits
                draining.kill()
                await anyio.to_thread.run_sync(draining.wait)
                await anyio.to_thread.run_sync(servers.enter_context, listing_server(port, successor, ledger))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(upgrade)
                result = await link.call("transfer_funds", arguments, idempotency_key="call_1", schema=given)
    return result, ledger


@pytest.mark.anyio
async def test_a_call_a_restarting_server_refused_is_not_sent_to_a_successor_that_changed_its_tool(
    tmp_path: Path,
) -> None:
    """The server comes back as a release whose `transfer_funds` charges a fee unless told otherwise: the host,
    waiting to send the call again, lists the tools of the server that came back first, and answers `tool_changed`
    instead of sending the call for the tool as it was."""
    result, ledger = await _transfer_through_an_upgrade(tmp_path, "with_fees")
    assert result.output["error"]["code"] == "tool_changed", result.output
    assert not ledger.exists(), ledger.read_text()


@pytest.mark.anyio
async def test_a_refused_call_is_not_sent_to_a_successor_whose_tools_could_not_be_listed(tmp_path: Path) -> None:
    """The server that came back (a release charging a fee) does not list its tools yet: the call is not sent
    unlisted; it waits, listing again, and past its wait is answered "Not executed"."""
    result, ledger = await _transfer_through_an_upgrade(tmp_path, "with_fees_unlisted")
    assert result.output["message"].startswith("Not executed"), result.output
    assert not ledger.exists(), ledger.read_text()


class HeldWithCalls:
    """The host's wire path, holding each response that asks for function calls until `release`: its conversation is
    then mid-turn, its model given the tools the turn began with, while another conversation goes on."""

    def __init__(self, inner: ResponsesTransport) -> None:
        self.inner = inner
        self.name = inner.name
        self.called = anyio.Event()
        self.release = anyio.Event()

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        response = await self.inner.create(request)
        if any(item.get("type") == "function_call" for item in response.get("output") or []):
            self.called.set()
            await self.release.wait()
        return response

    def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.inner.stream(request)

    async def aclose(self) -> None:
        pass


@pytest.mark.anyio
async def test_a_call_is_checked_against_the_tools_its_own_turn_was_given_not_another_conversations(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """Two conversations on one host (two web chat threads): B's model, given `transfer_funds` as it was, asks for a
    transfer; meanwhile the 2026-07-28 server restarts with the tool charging a fee unless told otherwise, and A's
    next turn takes up the new tools. B's call is still checked against the tools B's model was given: not sent."""
    port = free_port()
    ledger = tmp_path / "moved.txt"
    with listing_server(port, "first", ledger) as (url, first):
        async with host_for(emulator, tmp_path, scripted(), agent_name, mcp_url=url, mcp_token=TOKEN) as host:
            a = host.conversation()
            held = HeldWithCalls(host.transport)
            b = Conversation(
                held, host.toolbox, host.agent.reference(), CapturedDisplay(), agent_for_turn=host.agent_for_turn
            )
            before = await a.send("Transfer $20 from ACC-001 to ACC-002.")
            b_turns: list[Turn] = []
            b_done = anyio.Event()

            async def b_turn() -> None:
                b_turns.append(await b.send("Transfer $30 from ACC-001 to ACC-002."))
                b_done.set()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(b_turn)
                    await held.called.wait()
                    first.kill()
                    first.wait()
                    with listing_server(port, "with_fees", ledger):
                        await a.send("What is the balance of ACC-001?")
                        agent = host.agent
                        held.release.set()
                        await b_done.wait()
    [(_, executed)] = before.results
    assert executed.output["status"] == "executed", executed.output
    assert agent.version == "2", "A's turn took up the new tools"
    assert ledger.read_text().splitlines() == ["Moved 20 from ACC-001 to ACC-002."], "B's transfer must not run"
    [(call, refused)] = b_turns[0].results
    assert call.name == "transfer_funds"
    assert refused.output["error"]["code"] == "tool_changed", refused.output
