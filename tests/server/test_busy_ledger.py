"""A ledger file another process is writing never blocks the server's event loop.

An embedded ledger's transactions run on the event loop while no other writer is in the
way; when one is, the call waits in a worker thread instead, and completes once the lock
is free. Meanwhile the loop keeps serving.
"""

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from policy.testing import ScriptedResponder, approve
from tests.server.harness import Harness

pytestmark = pytest.mark.anyio
HELD_S = 0.5


async def test_a_gated_call_waits_off_the_loop_while_another_process_writes(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "ledger.db"
    harness = Harness("memory", f"sqlite:///{path}")
    source, target = harness.open_account("100"), harness.open_account("0")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    released = threading.Timer(HELD_S, lambda: other.execute("ROLLBACK"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with harness.client(ScriptedResponder(approve()), mode=mode) as client, anyio.create_task_group() as group:
        await client.call_tool("get_account_balance", {"account_id": source})  # the server is up
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        released.start()
        group.start_soon(tick)
        with anyio.fail_after(10):
            args = {"from_account": source, "to_account": target, "amount": "5"}
            result = await client.call_tool("transfer_funds", args)
        group.cancel_scope.cancel()
    released.join()
    other.close()

    assert result.structured_content is not None and result.structured_content["status"] == "executed"
    assert harness.balance(target) == 500
    assert ticks >= HELD_S / 0.01 / 2, "the event loop stalled while the ledger was locked"
