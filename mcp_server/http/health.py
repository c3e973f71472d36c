"""The database probe behind the unauthenticated `/healthz` and `/readyz`, cached.

Anyone who can reach the port can call them, so a request must never be a way to load the
database: one probe's result answers every request for `interval` seconds, and requests
that arrive while a probe runs wait for it instead of starting another. However many
requests come, the database sees at most one probe per interval.
"""

import time
from collections.abc import Callable

import anyio

from mcp_server.ledger.errors import LedgerError

PROBE_SECONDS = 3.0
"""A database that has not answered the probe's query by then is reported unavailable."""


class HealthProbe:
    def __init__(
        self,
        ping: Callable[[], None],
        *,
        interval: float,
        timeout: float = PROBE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._lock: anyio.Lock | None = None  # made on first use, inside the server's event loop
        self._status = "unavailable"
        self._probed_at: float | None = None

    async def database(self) -> str:
        """The database as last probed: "ok" if it answered within the timeout, else "unavailable"."""
        if self._fresh():
            return self._status
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if not self._fresh():  # else a probe finished while this request waited for it
                self._status = await self._probe()
                self._probed_at = self._clock()
        return self._status

    def _fresh(self) -> bool:
        return self._probed_at is not None and self._clock() - self._probed_at < self._interval

    async def _probe(self) -> str:
        with anyio.move_on_after(self._timeout):
            try:
                await anyio.to_thread.run_sync(self._ping, abandon_on_cancel=True)
            except LedgerError:
                return "unavailable"
            return "ok"
        return "unavailable"
