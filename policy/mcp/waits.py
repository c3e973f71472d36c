"""The calls of this process that wait inline for a human (2025-11-25: a form asked by `elicitation/create`, a
desk link waited on), so a server that stops can answer each at once instead of cutting its stream.

`stop` ends every wait, and any wait begun after it ends at once: the round then answers that the server is
restarting and the approval stays pending. Only the wait ends: an answer that arrived first is settled as
usual, one that did not is never read, so an approval is settled once or left pending, never both.
"""

from types import TracebackType

import anyio


class Waits:
    """The open waits of one server process. For the event loop only (no lock)."""

    def __init__(self) -> None:
        self._open: set[anyio.CancelScope] = set()
        self.stopped = False

    def hold(self, seconds: float) -> "_Held":
        """A scope to wait in for at most `seconds` (what is left of a question's time); `stop` cancels it (at once
        if the server stops already): see `_Held.stopped`. One scope ends the wait either way: a second one for
        the deadline (`anyio.move_on_after`) cost some thirty calls a question."""
        return _Held(self, seconds)

    def stop(self) -> None:
        """End every wait now and each one begun later (the server is stopping)."""
        self.stopped = True
        for scope in self._open:
            scope.cancel()


class _Held:
    """A wait held open in `Waits` (`Waits.hold`). A plain class, not `@contextmanager`: every inline question
    enters one, and a generator's machinery costs a dozen calls around the scope's own."""

    def __init__(self, waits: Waits, seconds: float) -> None:
        self._waits = waits
        self._scope = anyio.CancelScope(deadline=anyio.current_time() + seconds)

    @property
    def stopped(self) -> bool:
        """Whether the stopping server ended the wait (not its deadline, nor the end of what it waited for). A
        deadline that falls as the server stops counts as a stop: the approval is left pending, for the sweep."""
        return self._scope.cancelled_caught and self._waits.stopped

    def __enter__(self) -> "_Held":
        scope = self._scope
        if self._waits.stopped:
            scope.cancel()
        self._waits._open.add(scope)
        try:
            scope.__enter__()
        except BaseException:
            self._waits._open.discard(scope)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        try:
            return bool(self._scope.__exit__(kind, error, traceback))
        finally:
            self._waits._open.discard(self._scope)
