"""SIGTERM to an HTTP server (a rolling restart's): it drains before it stops. A 2025-11-25 call waiting for a
human is told at once that the server is restarting and its approval stays pending, nothing runs, and restarted,
the caller's retry under its key continues that approval and runs once. While a call still runs, `/readyz` is
503 and new requests are refused retryably; the running call finishes, then the process exits 0, as it does
when the drain's time runs out first."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST

from mcp_server.audit.reader import verify
from mcp_server.storage.gate_store import NETWORK_DEADLINE
from policy.testing import ScriptedResponder, approve, silence
from tests.drills.support import Books, ServerProcess, connect
from tests.support import TOKENS, WAITS_FOR_THE_LEDGER, keyed, logged, outcome

pytestmark = pytest.mark.anyio

ANSWERED_WITHIN = 3.0
"""Seconds after SIGTERM by which a call waiting for a human has its answer."""
EXIT_WITHIN = 10.0
"""Seconds a drained server takes to exit once nothing runs."""


@pytest.mark.parametrize(("stop", "code"), [("SIGTERM", 0), ("SIGINT", 130)])
async def test_a_stop_signal_tells_a_waiting_call_its_approval_stays_pending_and_the_keyed_retry_continues_it(
    db_url: str, tmp_path: Path, stop: str, code: int
) -> None:
    """SIGINT (an operator's Ctrl-C) cut the waiting call's stream: its caller got "SSE stream ended without a
    response" (which the SDK's clients read as the connection lost), not that its approval stays pending."""
    books = Books(db_url)
    source, target = books.open_accounts(2, "50.00")
    args = {"from_account": source, "to_account": target, "amount": "20.00", "memo": "sigterm"}
    key = keyed("sigterm-1")
    server = ServerProcess(db_url, tmp_path, approval_timeout=60)
    server.start()
    try:
        server.wait_ready()
        waiting = ScriptedResponder(silence(60))
        answered: list[tuple[float, dict[str, Any]]] = []

        async def call() -> None:
            with suppress(Exception):  # leaving: the server may be gone before the session's DELETE
                async with connect(server.url, waiting, mode="legacy") as client:
                    result = await client.call_tool("transfer_funds", args, meta=key)
                    answered.append((time.monotonic(), outcome(result)))

        process = server.process
        assert process is not None
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await waiting.asked()
            stopping = time.monotonic()
            process.send_signal(getattr(signal, stop))
            exited = await anyio.to_thread.run_sync(lambda: process.wait(EXIT_WITHIN))
            group.cancel_scope.cancel()

        assert exited == code, server.log_tail()
        [(at, result)] = answered
        assert at - stopping < ANSWERED_WITHIN
        (ref,) = books.db.read(lambda c: c.exec_driver_sql("SELECT ref FROM approvals").scalars().all())
        assert result["status"] == "failed" and result["error"]["code"] == "server_restarting", result
        assert result["approval_ref"] == ref
        assert f"restarting, so it stopped waiting for a human: approval {ref} stays pending" in result["message"]
        assert "same arguments and idempotency key" in result["message"]
        assert books.events(ref) == ["requested"] and books.approval_status(ref) == "pending"
        assert books.balance(source) == 5000

        server.start()
        server.wait_ready()
        back = ScriptedResponder(approve())
        async with connect(server.url, back, mode="legacy") as client:
            again = outcome(await client.call_tool("transfer_funds", args, meta=key))
        assert again["status"] == "executed" and again["approval_ref"] == ref, again
        assert [q.message for q in back.questions] == [q.message for q in waiting.questions]
        assert books.memo_counts("sigterm") == {"sigterm": 1}
        books.assert_sound()
    finally:
        server.stop()
        books.close()


async def test_while_a_call_runs_after_sigterm_readyz_is_503_new_requests_are_refused_and_the_call_finishes(
    db_url: str, tmp_path: Path
) -> None:
    async with _held_call(db_url, tmp_path) as held:
        held.server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

        ready = await anyio.to_thread.run_sync(lambda: _polled(held.server, "/readyz", 503))
        assert ready.json()["status"] == "draining"
        headers = {"Authorization": f"Bearer {TOKENS['local']}", "Accept": "application/json, text/event-stream"}
        initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
        refused = httpx2.post(held.server.url, json=initialize, headers=headers, timeout=5)
        assert refused.status_code == 503 and refused.headers["retry-after"].isdigit(), refused
        assert "restarting" in refused.json()["error"]["message"]
        # Not -32000: the SDK's clients read that as their connection closed and drop the session, calls and all.
        assert refused.json()["error"]["code"] == INVALID_REQUEST != CONNECTION_CLOSED
        assert held.exit_code() is None and not held.results  # draining: the call still runs

        held.lock.execute("ROLLBACK")
        with anyio.fail_after(10):
            while not held.results:
                await anyio.sleep(0.05)
        assert await held.exited() == 0, held.server.log_tail()
    assert held.results[0]["status"] == "executed", held.results
    assert held.books.balance(held.target) == 5100 and held.books.memo_counts("held") == {"held": 1}
    held.books.assert_sound()
    assert verify(held.books.db).pending == 0  # exiting at once left no audit record unchained


async def test_a_drain_whose_time_runs_out_exits_anyway_and_the_call_cut_off_moves_nothing(
    db_url: str, tmp_path: Path
) -> None:
    async with _held_call(db_url, tmp_path, "--drain-timeout", "1") as held:
        stopping = time.monotonic()
        held.server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await held.exited() == 0, held.server.log_tail()
        assert time.monotonic() - stopping < 1 + EXIT_WITHIN / 2, "the lock is still held: the call runs on"
        held.lock.execute("ROLLBACK")
    assert not held.results  # cut off: its caller sees an error, not an outcome
    assert held.books.balance(held.target) == 5000 and held.books.memo_counts("held") == {}
    held.books.assert_sound()


@pytest.mark.parametrize("signals", [("SIGINT",), ("SIGTERM", "SIGINT")])
async def test_sigint_stops_at_once_though_a_call_waits_for_the_ledger_and_moves_nothing(
    db_url: str, tmp_path: Path, signals: tuple[str, ...]
) -> None:
    """SIGINT (its own brief drain, or cutting a SIGTERM's short): uvicorn cancelled the call, but the process then
    waited for the worker thread its transaction ran on, which held on until the lock was free (15 s on SQLite,
    without end on PostgreSQL's row locks): an operator's Ctrl-C left a server with its port closed, still running."""
    async with _held_call(db_url, tmp_path) as held:
        process, since = held.server.process, held.server.log_path.stat().st_size
        assert process is not None
        stopping = time.monotonic()
        for name in signals:
            if name == "SIGINT" and "SIGTERM" in signals:
                await anyio.to_thread.run_sync(logged, held.server.log_path, "draining:", since)
            process.send_signal(getattr(signal, name))
        assert await held.exited() == 130, held.server.log_tail()
        assert time.monotonic() - stopping < EXIT_WITHIN / 2, "waited for the call's worker thread"
        held.lock.execute("ROLLBACK")
    assert not held.results
    assert held.books.balance(held.target) == 5000 and held.books.memo_counts("held") == {}
    held.books.assert_sound()


@pytest.mark.postgres
async def test_a_drain_exits_though_a_call_given_up_on_still_waits_for_a_lock(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL: a call whose store does not answer within its deadline is answered `database_unavailable`, its
    worker thread left waiting for the rows' locks (without end). The drain was then over and uvicorn stopped, but
    the process waited for that thread: a rolling restart's SIGTERM lasted until the lock was freed (or SIGKILL)."""
    async with _held_call(postgres_url, tmp_path) as held:
        held.server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        with anyio.fail_after(NETWORK_DEADLINE + EXIT_WITHIN):
            while not held.results:
                await anyio.sleep(0.05)
        assert held.results[0]["error"]["code"] == "database_unavailable", held.results
        assert await held.exited() == 0, held.server.log_tail()  # the lock still held
        held.lock.execute("ROLLBACK")
    assert held.books.balance(held.target) == 5000 and held.books.memo_counts("held") == {}
    held.books.assert_sound()


@dataclass
class _Held:
    """A server with one call running: a transfer waiting for SQLite's write lock, or PostgreSQL's locks on its
    accounts' rows, which the test holds (as another process would) until it sends ROLLBACK on `lock`."""

    server: ServerProcess
    books: Books
    target: str
    lock: sqlite3.Connection | psycopg.Connection[Any]
    results: list[dict[str, Any]]

    def exit_code(self) -> int | None:
        assert self.server.process is not None
        return self.server.process.poll()

    async def exited(self) -> int:
        process = self.server.process
        assert process is not None
        return await anyio.to_thread.run_sync(lambda: process.wait(EXIT_WITHIN))


@asynccontextmanager
async def _held_call(db_url: str, tmp_path: Path, *extra: str) -> AsyncIterator[_Held]:
    books = Books(db_url)
    source, target = books.open_accounts(2, "50.00")
    server = ServerProcess(books.db_url, tmp_path, "--log-level", "DEBUG", *extra)
    server.start()
    sqlite = db_url.startswith("sqlite")
    lock = (
        sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        if sqlite
        else psycopg.connect(db_url, autocommit=True)
    )
    held = _Held(server, books, target, lock, [])
    try:
        server.wait_ready()
        async with connect(server.url) as client, anyio.create_task_group() as group:
            await client.call_tool("get_account_balance", {"account_id": source})  # the session is up
            if sqlite:
                lock.execute("BEGIN IMMEDIATE")
            else:
                lock.execute("BEGIN")
                lock.execute("SELECT id FROM accounts WHERE id IN (%s, %s) FOR UPDATE", (source, target))
            since = server.log_path.stat().st_size

            async def running() -> None:
                args = {"from_account": source, "to_account": target, "amount": "1.00", "memo": "held"}
                with suppress(Exception):  # a call cut off gets no outcome
                    held.results.append(outcome(await client.call_tool("transfer_funds", args)))

            group.start_soon(running)
            await anyio.to_thread.run_sync(logged, server.log_path, WAITS_FOR_THE_LEDGER, since)  # waits for the lock
            yield held
    finally:
        lock.close()
        server.stop()
        books.close()


def _polled(server: ServerProcess, path: str, status: int, within: float = 3.0) -> httpx2.Response:
    """`path`'s answer once it is `status` (within `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        reply = server.get(path)
        if reply.status_code == status or time.monotonic() > deadline:
            assert reply.status_code == status, reply
            return reply
        time.sleep(0.05)
