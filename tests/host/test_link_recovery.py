"""The host's MCP link when the server restarts or dies: the next call opens a new session (launching a stdio server
anew) instead of every later call failing until the host is restarted."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types
import pytest

from agent_host.approvers import Answer, Question
from agent_host.emulator import Emulator
from agent_host.mcp_link import McpLink, McpTarget, ToolResult, connect
from agent_host.restarts import RESTART_WAIT_SECONDS
from agent_host.settings import McpProtocol
from tests.support import WAITS_FOR_THE_LEDGER, Clock, logged

from .helpers import (
    HTTP_SERVER_LOG,
    balance,
    free_port,
    host_for,
    http_mcp_server,
    ledger_target,
    listing_server,
    scripted,
    settings_for,
)

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


class SilentApprover:
    """An elicitation callback that counts the questions and answers none (the call's timeout ends each)."""

    def __init__(self) -> None:
        self.asked = 0

    async def __call__(self, context: object, params: mcp_types.ElicitRequestParams) -> mcp_types.ElicitResult:
        self.asked += 1
        await anyio.Event().wait()
        raise AssertionError("never answered")


@pytest.mark.anyio
async def test_a_call_without_a_key_that_times_out_on_a_reopened_session_is_not_sent_again(tmp_path: Path) -> None:
    """The session reopened after a restart is told apart from the one before: the old session's own 404s (its
    closing DELETE, its event stream) do not make a later failure of the new one a refusal. A call without a key
    whose answer did not come in time may have run: it is not sent again, and its outcome is said to be unknown."""
    port = free_port()
    approver = SilentApprover()
    with http_mcp_server(tmp_path, TOKEN, port) as (url, server):
        target = McpTarget(url=url, token=TOKEN, protocol="legacy", call_timeout=2.0)
        async with connect(target, approver) as link:
            server.kill()
            server.wait()
            with http_mcp_server(tmp_path, TOKEN, port):
                reopened = await link.call("get_account_balance", {"account_id": "ACC-001"})
                assert reopened.output["status"] == "executed", reopened.output
                session = link.client
                timed_out = await link.call(
                    "transfer_funds", {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "30.00"}
                )
                assert link.client is session, "the session that answered in time was not dropped"
    assert approver.asked == 1, "the call was sent once"
    assert timed_out.output["error"]["code"] == "tool_unavailable"
    assert "whether it ran is unknown" in timed_out.output["message"]
    assert timed_out.diagnostic is not None and "sent again" not in timed_out.diagnostic


def _break_ledger(tmp_path: Path) -> None:
    """Kill the launched stdio server and spoil its ledger, so that no server launched again can start."""
    [child] = _children()
    os.kill(child, signal.SIGKILL)
    for part in tmp_path.glob("ledger.db*"):
        part.write_bytes(b"not a ledger " * 512)


STARTUP_FAILURE = "file is not a database"
"""What a server launched on the spoiled ledger logs before it exits."""


@pytest.mark.anyio
async def test_a_turn_while_the_stdio_server_cannot_start_launches_it_once(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """The model calls two tools in one response while the server cannot start: the first call's relaunch fails,
    and the second is answered at once (not sent, nothing ran) instead of waiting for another launch to fail."""
    async with host_for(emulator, tmp_path, scripted(), agent_name) as host:
        _break_ledger(tmp_path)
        turn = await host.conversation().send("What are the balances of ACC-001 and ACC-002?")
        assert host.link.server_log is not None
        host.link.server_log.file.seek(0)
        launches_failed = host.link.server_log.file.read().count(STARTUP_FAILURE)
    [(_, first), (_, second)] = turn.results
    assert first.output["error"]["code"] == second.output["error"]["code"] == "tool_unavailable"
    assert launches_failed == 1, "the second call waited for a launch of its own"
    assert second.output["message"].startswith("Not executed"), second.output
    assert "nothing was sent; try again later" in second.output["message"]
    assert "the host tries to reconnect in 2 s" in second.output["message"]


@pytest.mark.anyio
async def test_the_server_log_shown_is_the_failed_launch_s_own(
    emulator: Emulator, tmp_path: Path, agent_name: str
) -> None:
    """A relaunch that fails is explained by its own log lines, not by the lines of the server before it."""
    target = ledger_target(settings_for(emulator, agent_name), tmp_path)
    async with connect(target, None) as link:
        _break_ledger(tmp_path)
        result = await link.call("get_account_balance", {"account_id": "ACC-001"}, idempotency_key="key-1")
    assert result.diagnostic is not None
    assert STARTUP_FAILURE in result.diagnostic, result.diagnostic
    assert "created the demo accounts" not in result.diagnostic, "an earlier launch's lines are not this one's"


class ClosingPort:
    """A loopback port that takes every connection and closes it at once (a server that is down behind it),
    counting the connections: each is one attempt of the host to reconnect."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0
        self._socket = socket.create_server(("127.0.0.1", port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ClosingPort:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked `accept` (closing alone does not)
        self._socket.close()
        self._thread.join()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()


@pytest.mark.anyio
async def test_calls_while_the_http_server_stays_down_wait_for_the_back_off_to_reconnect(tmp_path: Path) -> None:
    """After a failed reconnect, calls within the back-off window are not sent and try no connection; the first
    call after it tries again (a failure doubles the window), and a server back answers the next call."""
    port = free_port()
    with http_mcp_server(tmp_path, TOKEN, port) as (url, server):
        async with connect(McpTarget(url=url, token=TOKEN), None) as link:
            server.kill()
            server.wait()
            with ClosingPort(port) as down:
                await link.call("get_account_balance", {"account_id": "ACC-001"})  # finds the session gone
                tried = await link.call("get_account_balance", {"account_id": "ACC-001"})
                assert tried.output["message"].startswith("Not executed"), tried.output
                attempts = down.connections
                waiting = await link.call("get_account_balance", {"account_id": "ACC-001"}, idempotency_key="k-2")
                assert down.connections == attempts, "a call within the back-off window tried to reconnect"
                assert waiting.output["message"] == (
                    "Not executed: the tool's server cannot be reached, so nothing was sent; try again later "
                    "(the host tries to reconnect in 2 s)."
                )
                clock = Clock(1000.0)  # `time.monotonic` for the link's back-off
                link.backoff.clock = clock
                link.backoff.until = clock.now + 2.0  # the window as the real clock had it, on the test's clock
                clock.now += 2.0
                again = await link.call("get_account_balance", {"account_id": "ACC-001"})
                assert down.connections > attempts, "the first call after the window tries again"
                assert "the host tries to reconnect in 4 s" in again.output["message"], again.output
            clock.now += 4.0
            with http_mcp_server(tmp_path, TOKEN, port):
                back = await link.call("get_account_balance", {"account_id": "ACC-001"})
                assert back.output["status"] == "executed", back.output
    assert link.backoff.wait == 0.0, "a reconnect that worked starts the back-off over"


@pytest.mark.anyio
@PROTOCOLS
async def test_a_call_a_restarting_server_refused_is_sent_again_once_it_is_back(
    tmp_path: Path, protocol: McpProtocol
) -> None:
    """A rolling restart on one machine: SIGTERM drains the server (a call still runs, so the drain lasts), which
    refuses a new call 503 with Retry-After, nothing done; the host waits as asked and sends it again under its key,
    through the moment nothing listens (the server gone, its successor starting), and it runs on the server that
    came back: not answered "whether it ran is unknown". The call held on the draining server, on the same session,
    runs to its end meanwhile (the refusal is not read as the connection closing)."""
    port = free_port()
    with ExitStack() as servers:
        url, server = servers.enter_context(http_mcp_server(tmp_path, TOKEN, port))
        async with connect(McpTarget(url=url, token=TOKEN, protocol=protocol), None) as link:

            async def during() -> ToolResult:
                return await link.call("get_account_balance", {"account_id": "ACC-001"}, idempotency_key="during")

            held, refused = await _through_a_drain(tmp_path, port, servers, server, link, during)
            after = await link.call("get_account_balance", {"account_id": "ACC-001"})
    assert held["status"] == "pending_approval", held  # no human here: a desk link, its end
    assert refused.output["status"] == "executed", refused.output
    assert after.output["balance"] == "5000.00", after.output


@pytest.mark.anyio
async def test_a_turn_starting_while_a_sessionless_server_drains_cuts_no_call_and_waits_for_the_restart(
    tmp_path: Path,
) -> None:
    """The web front end starts a turn (re-listing a sessionless server's tools) while the server drains, with
    another conversation's call running on it: the listing refused 503 must not end the link's session, which would
    cut the running call and answer the next call "cannot be reached" at once instead of waiting for the restart."""
    port = free_port()
    with ExitStack() as servers:
        url, server = servers.enter_context(http_mcp_server(tmp_path, TOKEN, port))
        async with connect(McpTarget(url=url, token=TOKEN, protocol="auto"), None) as link:

            async def turn() -> ToolResult:
                await link.relist()  # another conversation's turn starts
                return await link.call("get_account_balance", {"account_id": "ACC-001"}, idempotency_key="d")

            held, during = await _through_a_drain(tmp_path, port, servers, server, link, turn)
    assert held["status"] == "pending_approval", held
    assert during.output["status"] == "executed", during.output


async def _through_a_drain(
    tmp_path: Path,
    port: int,
    servers: ExitStack,
    server: subprocess.Popen[bytes],
    link: McpLink,
    meanwhile: Callable[[], Awaitable[ToolResult]],
) -> tuple[dict[str, Any], ToolResult]:
    """A keyed transfer held on the HTTP `server` (its ledger write-locked), then SIGTERM: the drain waits for that
    transfer. Once it drains, `meanwhile` runs; a second later the lock is released, so the transfer ends, the
    server exits, and it is started again (in `servers`) on the same port and ledger. The held transfer's output
    and `meanwhile`'s result."""
    held: list[dict[str, Any]] = []

    async def hold() -> None:
        held.append((await link.call("transfer_funds", TRANSFER, idempotency_key="held")).output)

    with _write_lock(tmp_path) as lock:

        async def restart() -> None:
            await anyio.to_thread.run_sync(logged, lock.log, REFUSED, draining)  # `meanwhile` was refused
            lock.release()  # the held transfer ends, the drain with it, and the server exits
            await anyio.to_thread.run_sync(server.wait, 30)
            await anyio.to_thread.run_sync(servers.enter_context, http_mcp_server(tmp_path, TOKEN, port))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hold)
            await lock.waited_on()
            draining = lock.log.stat().st_size
            server.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(_draining, port)
            tasks.start_soon(restart)
            result = await meanwhile()
    assert held, "the held transfer ended"
    return held[0], result


def _draining(port: int) -> None:
    """Wait until the server on `port` says it is draining (`/readyz` 503)."""
    for _ in range(100):
        if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 503:
            return
        time.sleep(0.05)
    raise AssertionError("the server never drained")


CALL_TIMEOUT = 20.0
"""The tool timeout of the mid-call kill tests: a call that waited it out would end at 20 s, not at the host's 330."""


@pytest.mark.anyio
@PROTOCOLS
async def test_a_call_whose_http_server_was_killed_under_it_is_sent_again_once_it_is_back_and_runs_once(
    emulator: Emulator, tmp_path: Path, agent_name: str, protocol: McpProtocol
) -> None:
    """kill -9 with a keyed call in flight (held on the server by the ledger's write lock): its response stream is
    reset, so whether it ran is not known to the host; it waits for the server to come back (restarted on the same
    port and ledger a few seconds later) and sends the call again under its key, which runs it once."""
    port = free_port()
    with ExitStack() as servers:
        url, server = servers.enter_context(http_mcp_server(tmp_path, TOKEN, port))
        async with host_for(
            emulator,
            tmp_path,
            scripted("approve", "approve"),
            agent_name,
            mcp_url=url,
            mcp_token=TOKEN,
            mcp_protocol=protocol,
            tool_timeout=CALL_TIMEOUT,
            approval_timeout=10.0,
        ) as host:
            with _write_lock(tmp_path) as lock:
                async with anyio.create_task_group() as tasks:
                    took = _Timed(host.link.call("transfer_funds", TRANSFER, idempotency_key="call-1"))
                    tasks.start_soon(took.run)
                    await lock.waited_on()
                    server.kill()
                    server.wait()
                    lock.release()
                    await anyio.to_thread.run_sync(servers.enter_context, http_mcp_server(tmp_path, TOKEN, port))
            assert took.result.output["status"] == "executed", took.result.output
            assert took.seconds < CALL_TIMEOUT / 2, f"the call took {took.seconds:.1f} s"
            assert await balance(host, "ACC-001") == Decimal("4995.00"), "exactly once"
    assert len(host.desk.records) == 1, "asked once: the killed server never reached the question"


@pytest.mark.anyio
@PROTOCOLS
async def test_a_call_whose_http_server_was_killed_under_it_and_stays_down_is_answered_unknown_within_seconds(
    tmp_path: Path, protocol: McpProtocol
) -> None:
    """No server comes back: the call is answered that whether it ran is unknown once the restart wait is spent,
    well before its timeout; the calls right after it are answered at once, not sent (the reconnect back-off)."""
    with http_mcp_server(tmp_path, TOKEN) as (url, server):
        target = McpTarget(url=url, token=TOKEN, protocol=protocol, call_timeout=CALL_TIMEOUT)
        async with connect(target, None) as link:
            with _write_lock(tmp_path) as lock:
                async with anyio.create_task_group() as tasks:
                    took = _Timed(link.call("transfer_funds", TRANSFER, idempotency_key="call-1"))
                    tasks.start_soon(took.run)
                    await lock.waited_on()
                    server.kill()
                    server.wait()
            started = time.monotonic()
            next_call = await link.call("get_account_balance", {"account_id": "ACC-001"}, idempotency_key="call-2")
            next_took = time.monotonic() - started
    assert "whether it ran is unknown" in took.result.output["message"], took.result.output
    assert took.seconds < RESTART_WAIT_SECONDS + 5, f"the call took {took.seconds:.1f} s"
    assert took.result.diagnostic is not None and "not back after" in took.result.diagnostic, took.result
    assert next_call.output["message"].startswith("Not executed"), next_call.output
    assert next_took < 1.0, f"the next call took {next_took:.1f} s"


TRANSFER = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5.00"}


@pytest.mark.anyio
@PROTOCOLS
async def test_a_proxys_503_after_the_call_ran_is_not_read_as_the_servers_refusal(
    tmp_path: Path, protocol: McpProtocol
) -> None:
    """Only the server's own 503 (a JSON-RPC error: it is restarting, nothing was done) says a call did not run. A
    proxy's (its upstream reset after it forwarded the call) says nothing of that: the call was answered "Not executed
    ... nothing was done; try again", and a model trying again with a new call moves the money twice."""
    ledger = tmp_path / "moved.txt"
    with listing_server(free_port(), "first_behind_a_proxy", ledger) as (url, _):
        async with connect(McpTarget(url=url, token=TOKEN, protocol=protocol), None) as link:
            result = await link.call(
                "transfer_funds",
                {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "5"},
                idempotency_key="k1",
            )
    assert ledger.read_text().splitlines() == ["Moved 5 from ACC-001 to ACC-002."]
    assert "whether it ran is unknown" in result.output["message"], result.output


REFUSED = '"POST /mcp HTTP/1.1" 503'
"""The access log's line of an MCP request the draining server refused."""


class _WriteLock:
    """The HTTP server's ledger write-locked, as another process would hold it: a transfer sent meanwhile waits."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / HTTP_SERVER_LOG
        self.since = self.log.stat().st_size
        self.conn = sqlite3.connect(tmp_path / "http-ledger.db", isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    async def waited_on(self) -> None:
        """Wait until a call sent since the lock was taken waits for it on the server."""
        await anyio.to_thread.run_sync(logged, self.log, WAITS_FOR_THE_LEDGER, self.since)

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


@contextmanager
def _write_lock(tmp_path: Path) -> Iterator[_WriteLock]:
    """The HTTP server's ledger write-locked until the block ends (or `release`)."""
    lock = _WriteLock(tmp_path)
    try:
        yield lock
    finally:
        lock.release()
        lock.conn.close()


class _Timed:
    """A call awaited in a task of its own: its result and how long it took."""

    def __init__(self, call: Awaitable[ToolResult]) -> None:
        self._call = call
        self.seconds = 0.0
        self.result = ToolResult({})

    async def run(self) -> None:
        started = time.monotonic()
        self.result = await self._call
        self.seconds = time.monotonic() - started
