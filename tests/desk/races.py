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
from tests.desk.world import DeskBrowser, World

LINE_UP_S = 60.0
"""How long a race may take to line up: generous, as a loaded machine is slow to get there; only a broken
line-up waits it out (a shorter bound let a slow caller miss the race, or be let go before its rival came)."""


def abreast(world: World, callers: int) -> int:
    """How many of `callers` racing writers reach a point inside their transactions together: all on
    PostgreSQL; one on SQLite, where a writer holds the process's write lock until it commits."""
    return callers if world.db.dialect == "postgresql" else 1


class Held:
    """Hold every caller of a function at its start until `go`, to line races up."""

    def __init__(self, function: Any, callers: int) -> None:
        self.function, self.callers = function, callers
        self.entered = threading.Semaphore(0)
        self.go = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.release()
        self.go.wait(LINE_UP_S)
        return self.function(*args, **kwargs)

    async def all_entered(self) -> None:
        """Wait until all `callers` are held (polling, so a failing test's cancellation is not held up)."""
        arrived, deadline = 0, time.monotonic() + LINE_UP_S
        while arrived < self.callers:
            assert time.monotonic() < deadline, f"{arrived} of {self.callers} callers reached the race"
            if await anyio.to_thread.run_sync(self.entered.acquire, True, 0.05):
                arrived += 1

    async def line_up(self) -> None:
        """Let all `callers` go together once they are held (and go in any case, so none waits on a failure)."""
        try:
            await self.all_entered()
        finally:
            self.go.set()


async def change_while_held(world: World, held: Held, change: Callable[[], None]) -> bool:
    """Run `change` in a thread while `held`'s one caller waits inside its write transaction, then let it go:
    whether the change committed first. On PostgreSQL it does (the caller holds no row it needs yet), and is
    waited for; on SQLite it never does (it waits for the caller's write lock). Which came first was once
    judged by whether the change ended within 0.5 s: on a loaded machine a change that came later, yet before
    the caller read what it changed, was taken for one that came after."""
    changed_first = world.db.dialect == "postgresql"
    changing = threading.Thread(target=change)
    try:
        await held.all_entered()
        changing.start()
        # SQLite: a while for the change to queue for the lock (the outcome does not depend on it).
        await anyio.to_thread.run_sync(changing.join, LINE_UP_S if changed_first else 0.5)
        assert changing.is_alive() != changed_first, "the change waited for the held caller, or ran past it"
    finally:
        held.go.set()
    await anyio.to_thread.run_sync(changing.join, LINE_UP_S)
    return changed_first


async def change_during_decision(
    world: World,
    approver: DeskBrowser,
    passkey: SoftPasskey,
    approval: Approval,
    change: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[httpx2.Response, bool]:
    """`approver` approves `approval`, and `change` runs while the signature is being checked: the desk's
    reply, and whether the change committed first (`change_while_held`)."""
    issued = await approver.challenge(approval.ref, "approved")
    body = {"verdict": "approved", "nonce": issued["nonce"], "credential": passkey.sign(issued["options"])}
    held = Held(passkeys.check_assertion, 1)
    monkeypatch.setattr(decisions, "check_assertion", held)
    replies: list[httpx2.Response] = []

    async def decide() -> None:
        replies.append(await approver.post(f"/approvals/{approval.ref}/decide", body))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(decide)
        changed_first = await change_while_held(world, held, change)
    return replies[0], changed_first
