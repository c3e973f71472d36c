"""In-process turns by name: requests of one name that must not overlap wait here, holding nothing.

Some desk writes take a database turn by name (the sign-in challenges of one client address, counted
against a cap), so that processes cannot together pass the cap. Requests of one name arriving at once
would each wait for that turn inside the database, each holding a pooled connection (and a worker
thread) while it waits: anyone could then drain the pool the gate needs. Waiting here first, they
reach the database one at a time per name; the database turn still orders them across processes.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class Turns:
    """One `anyio.Lock` per name while anyone holds or waits for it (so as many as names in use)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def turn(self, name: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(name) or (anyio.Lock(), 0)
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[name]
            if users > 1:
                self._locks[name] = (lock, users - 1)
            else:
                del self._locks[name]
