"""A deadline for each request's head: uvicorn's HTTP/1.1 protocol waits for one without end.

A connection that sends nothing, or trickles a header a byte at a time, or leaves the next request's head
unfinished after a response (uvicorn's keep-alive timer stops at its first byte), was held for good: anyone who
can connect, no token needed, could hold connections until the process ran out of file descriptors. Here a
connection that has not sent a whole request head `seconds` after it opened, or after its last response ended,
is closed. A request whose head arrived is never cut, however long it runs (a listening stream, a call waiting
for a human).
"""

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeadDeadline(H11Protocol):
    head_timeout: float

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle and self._deadline is not None:  # a request's head arrived: the request runs
            self._deadline.cancel()
            self._deadline = None

    def on_response_complete(self) -> None:
        self._arm()  # before uvicorn reads a pipelined request's head, which stops it again
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.head_timeout, self._overdue)

    def _overdue(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def head_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol (`uvicorn.Config(http=...)`) closing connections whose head is `seconds` late."""
    return type("HeadDeadlineH11Protocol", (_HeadDeadline,), {"head_timeout": seconds})
