"""How soon the host tries again to open a session with an MCP server it could not reach.

Each attempt costs the user a wait: a stdio server launched again takes seconds to fail, and an HTTP
address that never answers takes the whole connect timeout (30 s). So after a failed attempt, the calls
within a window are answered at once (not sent) and the first call after it tries again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FIRST_WAIT_SECONDS = 2.0
"""The window after a first failure. The calls of one response run back to back within milliseconds, so
they all fall into it and cost one attempt between them; and a person who restarted the server and asks
again is not kept waiting by a window longer than it takes them to ask."""

MAX_WAIT_SECONDS = 30.0
"""Each failure in a row doubles the window up to this: a server down for long costs one attempt per
half minute, the length of one connect timeout to an address that never answers."""


@dataclass
class Backoff:
    """The window after a failed attempt to reconnect, and why that attempt failed."""

    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    wait: float = 0.0
    """The current window's length; 0 until an attempt fails, and again once one succeeds."""
    until: float = 0.0
    """When the window ends (on `clock`)."""
    failure: str = ""

    def left(self) -> float | None:
        """Seconds until the next attempt may be made, or `None` if one may be made now."""
        left = self.until - self.clock()
        return left if left > 0 else None

    def failed(self, reason: str) -> None:
        self.wait = min(self.wait * 2, MAX_WAIT_SECONDS) if self.wait else FIRST_WAIT_SECONDS
        self.until = self.clock() + self.wait
        self.failure = reason

    def succeeded(self) -> None:
        self.wait, self.until, self.failure = 0.0, 0.0, ""


def in_seconds(seconds: float) -> str:
    """`seconds` for a person, rounded up: never sooner than the host will try."""
    return f"{math.ceil(seconds)} s"
