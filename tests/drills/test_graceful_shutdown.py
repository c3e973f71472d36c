"""SIGTERM while a 2025-11-25 call waits for a human: the server stops within seconds, nothing runs,
and the question is left pending; restarted, the caller's retry under its key is asked it again and
it runs once."""

from __future__ import annotations

import signal
import time
from contextlib import suppress
from pathlib import Path

import anyio
import pytest

from policy.testing import ScriptedResponder, approve, silence
from tests.drills.support import Books, ServerProcess, connect
from tests.support import keyed, outcome

pytestmark = pytest.mark.anyio

SHUTDOWN_BOUND = 10.0
"""Seconds a graceful stop may take with a question open (the SDK bounds its farewell writes at 5 s + 1 s)."""


async def test_sigterm_with_a_question_open_runs_nothing_and_the_keyed_retry_is_asked_again(
    db_url: str, tmp_path: Path
) -> None:
    books = Books(db_url)
    source, target = books.open_accounts(2, "50.00")
    args = {"from_account": source, "to_account": target, "amount": "20.00", "memo": "sigterm"}
    key = keyed("sigterm-1")
    server = ServerProcess(db_url, tmp_path, approval_timeout=60)
    server.start()
    try:
        server.wait_ready()
        waiting = ScriptedResponder(silence(60))

        async def call() -> None:
            with suppress(Exception):  # its server went away: no result reached it
                async with connect(server.url, waiting, mode="legacy") as client:
                    await client.call_tool("transfer_funds", args, meta=key)

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await waiting.asked()
            process = server.process
            assert process is not None
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(lambda: process.wait(SHUTDOWN_BOUND))
            stopped = time.monotonic() - stopping
            group.cancel_scope.cancel()
        assert stopped < SHUTDOWN_BOUND

        (ref,) = books.db.read(lambda c: c.exec_driver_sql("SELECT ref FROM approvals").scalars().all())
        assert books.events(ref) == ["requested"]
        assert books.balance(source) == 5000

        server.start()
        server.wait_ready()
        back = ScriptedResponder(approve())
        async with connect(server.url, back, mode="legacy") as client:
            result = outcome(await client.call_tool("transfer_funds", args, meta=key))
        assert result["status"] == "executed" and result["approval_ref"] == ref, result
        assert [q.message for q in back.questions] == [q.message for q in waiting.questions]
        assert books.memo_counts("sigterm") == {"sigterm": 1}
        books.assert_sound()
    finally:
        server.stop()
        books.close()
