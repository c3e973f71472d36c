"""Making concurrent calls meet where a race would be, so a concurrency test cannot pass by luck.

`Gathering` holds every approval question until the test lets all the answers go at once.
`audit_head_held` keeps, on PostgreSQL, every transaction that records an outcome from its
last statement (the insert of its audit records; the sequencer's lock is held too, so no
sequencer queues behind it) until a given number of transactions wait behind it,
directly or behind one another. Transactions that are not serialised any earlier have then
all decided and acted before any of them commits: the interleaving a race needs. On SQLite
it holds nothing (one writer at a time: there is no interleaving to force).
"""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import psycopg
import pytest
from mcp.client import ClientRequestContext

from mcp_server.audit.sequencer import SEQUENCER_LOCK
from mcp_server.storage.locks import LEDGER
from policy.testing import Answer, ScriptedResponder, approve

WAIT_LIMIT = 20.0


class Gathering:
    """An elicitation callback: records each question, and answers it with `answer` once released."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or approve()
        self.asked = ScriptedResponder()
        self._released = anyio.Event()

    async def __call__(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        await self.asked(context, params)  # records the question
        await self._released.wait()
        return self.answer.reply(params.message)

    async def until_asked(self, count: int) -> None:
        with anyio.fail_after(WAIT_LIMIT):
            while len(self.asked.questions) < count:
                await anyio.sleep(0.02)

    def release(self) -> None:
        self._released.set()


def hold_audit_writes(conn: psycopg.Connection[Any]) -> None:
    """Until `conn`'s transaction ends: no sequencer runs and every insert of audit records waits."""
    conn.execute(f"SELECT pg_advisory_xact_lock(%s, hashtext({LEDGER}))", (SEQUENCER_LOCK,))
    conn.execute("LOCK TABLE audit_log IN SHARE MODE")


def waiting_behind(watcher: psycopg.Connection[Any], holder: psycopg.Connection[Any] | int) -> int | None:
    """The backend of some transaction waiting for a lock `holder` (a connection or a backend) holds, if any."""
    pid = holder if isinstance(holder, int) else holder.info.backend_pid
    rows = watcher.execute("SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    return next((waiter for waiter, blockers in rows.fetchall() if pid in blockers), None)


def until_waiting_behind(watcher: psycopg.Connection[Any], holder: psycopg.Connection[Any] | int, what: str) -> int:
    """The backend waiting behind `holder`, once one does."""
    for _ in range(int(WAIT_LIMIT / 0.02)):
        waiter = waiting_behind(watcher, holder)
        if waiter is not None:
            return waiter
        threading.Event().wait(0.02)
    pytest.fail(what)


class HeldHead:
    def __init__(self, url: str | None) -> None:
        self._holder = psycopg.connect(url) if url is not None else None
        self._watcher = psycopg.connect(url, autocommit=True) if url is not None else None
        if self._holder is not None:
            hold_audit_writes(self._holder)

    async def until_waiting(self, count: int) -> None:
        """Until `count` transactions wait behind the holder (directly or through each other)."""
        if self._holder is None:
            return
        with anyio.fail_after(WAIT_LIMIT):
            while self._waiting() < count:
                await anyio.sleep(0.02)

    def release(self) -> None:
        if self._holder is not None:
            self._holder.rollback()
            self._holder.close()
            self._holder = None
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def _waiting(self) -> int:
        assert self._holder is not None and self._watcher is not None
        rows = self._watcher.execute(
            "SELECT pid, pg_blocking_pids(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchall()
        behind: set[int] = set()
        frontier = {self._holder.info.backend_pid}
        while frontier:
            frontier = {pid for pid, blockers in rows if set(blockers) & frontier} - behind
            behind |= frontier
        return len(behind)


@asynccontextmanager
async def audit_head_held(postgres_url: str | None) -> AsyncIterator[HeldHead]:
    """Hold audit writes (PostgreSQL; nothing when `postgres_url` is None) until released or left."""
    held = HeldHead(postgres_url)
    try:
        yield held
    finally:
        held.release()
