"""Stopping the HTTP server without leaving callers hanging or guessing (a rolling restart's SIGTERM).

uvicorn alone, on SIGTERM, closes its port and (through `sse_starlette`) cuts every open stream: a call
waiting for a human got no answer, and its agent waited out its tool timeout. Here the first SIGTERM drains
first, with the port still open:

- `/readyz` answers 503, so a load balancer stops sending work here;
- every new request to the MCP endpoint is refused 503 with `Retry-After`, before it reaches anything (but a
  DELETE, a client ending its session);
- each call waiting for a human is answered at once that the server is restarting and its approval stays
  pending (`policy.mcp.waits`);
- the calls still running (their transactions) finish as usual.

Once none runs, or `drain_timeout` seconds after the signal, uvicorn stops as before (giving what is left
`STOP_GRACE` seconds) and the process exits 0, without waiting for a worker thread a call cut off (or given up
on past its database deadline) left behind. A first SIGINT (an operator's Ctrl-C) drains as briefly as it can:
the waiting calls are answered the same way, the running ones get `INTERRUPT_GRACE` seconds, and the process
exits 130 (uvicorn's SIGINT cut every stream, a waiting caller's too, unanswered). A second signal stops at once.
"""

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.http.refusal import refuse
from policy.mcp.waits import Waits

log = logging.getLogger(__name__)

RETRY_AFTER = 2
"""Seconds a refused caller is told to wait before retrying (by then a load balancer routes it elsewhere)."""
STOP_GRACE = 2
"""Seconds uvicorn gives what is left once the drain is over (streams closing) before cancelling it."""
INTERRUPT_GRACE = 1.0
"""Seconds a SIGINT's drain gives the calls still running (enough for the answers to waiting calls to go out)."""
_REFUSAL = "The server is restarting; nothing was done. Send the request again in a few seconds."


class Drain:
    """One server's drain: begun once, over when no MCP request runs or its time is up."""

    def __init__(self, waits: Waits, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.waits = waits
        self.seconds = seconds
        self.running = 0
        """MCP requests being served (a stream a client keeps open to listen is not one: it never ends)."""
        self._clock = clock
        self._deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self._deadline is not None

    def begin(self, seconds: float | None = None) -> None:
        """Refuse new work from now on and end the waits for a human (idempotent); over within `seconds`, if
        shorter than the drain's own."""
        if self._deadline is not None:
            return
        limit = self.seconds if seconds is None else min(seconds, self.seconds)
        self._deadline = self._clock() + limit
        log.info("draining: %d MCP requests running, at most %g s", self.running, limit)
        self.waits.stop()

    def over(self) -> bool:
        if self._deadline is None:
            return False
        if self.running and self._clock() < self._deadline:
            return False
        if self.running:
            log.warning("drain time is up with %d MCP requests still running; stopping anyway", self.running)
        return True

    def guard(self, app: ASGIApp) -> ASGIApp:
        """`app` (the MCP endpoint) with its requests counted, and refused while draining."""
        return _Guarded(app, self)


class _Guarded:
    """An ASGI app (a class: Starlette takes a plain function for a request handler) behind a drain."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        drain = self.drain
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif drain.draining and scope["method"] != "DELETE":  # a client ending its session starts nothing
            await refuse(send, 503, _REFUSAL, [(b"retry-after", str(RETRY_AFTER).encode())])
        elif scope["method"] == "GET":  # a client's listening stream: open until the server stops
            await self.app(scope, receive, send)
        else:
            drain.running += 1
            try:
                await self.app(scope, receive, send)
            finally:
                drain.running -= 1


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM or SIGINT drains before it stops (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self.stopped_by: int | None = None
        """The signal that began the drain."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT) and self.stopped_by is None:
            # Begun on the loop's next tick: a signal handler may run in the middle of anything. Not kept to be
            # raised again once stopped (as uvicorn does): the exit status is the caller's (`stopped_by`).
            self.stopped_by = sig
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.stopped_by is not None:
            self.drain.begin(INTERRUPT_GRACE if self.stopped_by == signal.SIGINT else None)
            if self.drain.over():
                self.should_exit = True  # uvicorn's flag: sse_starlette now ends the streams still open
                return True
        return await super().on_tick(counter)
