"""Lining races up at the desk: callers held at a function's start, and an administrator's change made while an
approver's signed decision is being checked."""

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx2
import pytest

from mcp_server.desk import decisions, passkeys
from policy.store import Approval
from tests.desk.authenticator import SoftPasskey
from tests.desk.world import DeskBrowser


class Held:
    """Hold every caller of a function at its start until `go` (or a timeout), to line races up."""

    def __init__(self, function: Any, callers: int) -> None:
        self.function, self.callers = function, callers
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.release()
        self.go.wait(3)
        return self.function(*args, **kwargs)

    async def all_entered(self, timeout: float = 3.0) -> int:
        """How many callers arrived within `timeout` (a serialising backend lets only one in at a time)."""
        arrived, deadline = 0, time.monotonic() + timeout
        while arrived < self.callers and time.monotonic() < deadline:
            if await anyio.to_thread.run_sync(self.entered.acquire, True, 0.05):
                arrived += 1
        return arrived


async def change_during_decision(
    approver: DeskBrowser,
    passkey: SoftPasskey,
    approval: Approval,
    change: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[httpx2.Response, bool]:
    """`approver` approves `approval`, and `change` runs in a thread while the signature is being checked: the
    desk's reply, and whether the change committed first (PostgreSQL: unless it waits for the decision; SQLite:
    never, it waits for the decision's write lock)."""
    issued = await approver.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    held = Held(passkeys.check_assertion, 1)
    monkeypatch.setattr(decisions, "check_assertion", held)
    replies: list[httpx2.Response] = []

    async def decide() -> None:
        replies.append(await approver.post(f"/approvals/{approval.ref}/decide", body))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(decide)
        assert await held.all_entered() == 1
        changing = threading.Thread(target=change)
        changing.start()
        changing.join(0.5)
        changed_first = not changing.is_alive()
        held.go.set()
    await anyio.to_thread.run_sync(changing.join, 5)
    return replies[0], changed_first
