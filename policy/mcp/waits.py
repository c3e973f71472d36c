"""The calls of this process that wait inline for a human (2025-11-25: a form asked by `elicitation/create`, a
desk link waited on), so a server that stops can answer each at once instead of cutting its stream.

`stop` ends every wait, and any wait begun after it ends at once: the round then answers that the server is
restarting and the approval stays pending. Only the wait ends: an answer that arrived first is settled as
usual, one that did not is never read, so an approval is settled once or left pending, never both.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class Waits:
    """The open waits of one server process. For the event loop only (no lock)."""

    def __init__(self) -> None:
        self._open: set[anyio.CancelScope] = set()
        self.stopped = False

    @contextmanager
    def hold(self) -> Iterator[anyio.CancelScope]:
        """A scope to wait in; `stop` cancels it (at once if the server stops already): see `cancelled_caught`."""
        scope = anyio.CancelScope()
        if self.stopped:
            scope.cancel()
        self._open.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._open.discard(scope)

    def stop(self) -> None:
        """End every wait now and each one begun later (the server is stopping)."""
        self.stopped = True
        for scope in self._open:
            scope.cancel()
