"""Fault injection: throttling, server errors, latency and wire-shape variations on demand, counted so
tests can assert retries."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Literal

from agent_host.emulator.errors import ApiError

FaultTarget = Literal["all", "agents", "responses"]
"""Which route family faults apply to: everything, the agents endpoints, or the Responses API."""

WireShape = Literal[
    "canonical",
    "calls_in_item_done_only",
    "calls_in_completed_only",
    "arguments_in_done_only",
    "calls_without_id",
    "interleaved_calls",
]
"""How function calls reach the client; all are legal (see docs/foundry-wire-notes.md).

`canonical`: added, argument deltas, arguments done, item done, and in the final output.
`calls_in_item_done_only`: a streamed call is only an `output_item.done` (not in the final output).
`calls_in_completed_only`: a streamed call has no item events, only the final output has it.
`arguments_in_done_only`: no argument deltas, the arguments only in `function_call_arguments.done`.
`calls_without_id`: call items carry no `id` (streamed or not); argument events have an empty `item_id`.
`interleaved_calls`: the argument deltas of several calls take turns, matched by `output_index`.
"""


@dataclass(frozen=True)
class FaultConfig:
    """What to inject; all off by default.

    The first `rate_limited` matching requests get 429 with `Retry-After`/`retry-after-ms` set
    from `retry_after` seconds, the next `server_errors` get 500, and every matching request waits
    `delay` seconds first. Responses send their function calls in `shape`, and a streamed
    response pauses `event_delay` seconds between events.
    """

    rate_limited: int = 0
    server_errors: int = 0
    retry_after: float = 1.0
    delay: float = 0.0
    target: FaultTarget = "all"
    shape: WireShape = "canonical"
    event_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_limited < 0 or self.server_errors < 0:
            raise ValueError("fault counts must be >= 0")
        if self.retry_after < 0 or self.delay < 0 or self.event_delay < 0:
            raise ValueError("retry_after, delay and event_delay must be >= 0 seconds")


@dataclass(frozen=True)
class FaultStats:
    """Counts of requests reaching the fault layer (i.e. authenticated API requests)."""

    requests: int = 0
    served: int = 0
    rate_limited: int = 0
    server_errors: int = 0


class FaultInjector:
    """Applies a `FaultConfig`; thread-safe because tests re-arm it from outside the server thread."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = FaultConfig()
        self._remaining_429 = 0
        self._remaining_500 = 0
        self._stats = FaultStats()
        self.arm(config or FaultConfig())

    def arm(self, config: FaultConfig) -> None:
        """Replace the active faults (remaining counts restart from `config`); statistics are kept."""
        with self._lock:
            self._config = config
            self._remaining_429 = config.rate_limited
            self._remaining_500 = config.server_errors

    @property
    def shape(self) -> WireShape:
        with self._lock:
            return self._config.shape

    @property
    def event_delay(self) -> float:
        with self._lock:
            return self._config.event_delay

    @property
    def stats(self) -> FaultStats:
        with self._lock:
            return self._stats

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = FaultStats()

    def admit(self, family: Literal["agents", "responses"]) -> tuple[float, ApiError | None]:
        """Count a request; return the delay to apply and the fault to answer with, if any."""
        with self._lock:
            config = self._config
            stats = replace(self._stats, requests=self._stats.requests + 1)
            applies = config.target in ("all", family)
            fault: ApiError | None = None
            if applies and self._remaining_429 > 0:
                self._remaining_429 -= 1
                stats = replace(stats, rate_limited=stats.rate_limited + 1)
                fault = _rate_limited(config.retry_after)
            elif applies and self._remaining_500 > 0:
                self._remaining_500 -= 1
                stats = replace(stats, server_errors=stats.server_errors + 1)
                fault = _server_error()
            else:
                stats = replace(stats, served=stats.served + 1)
            self._stats = stats
            return (config.delay if applies else 0.0), fault


def _rate_limited(retry_after: float) -> ApiError:
    headers = {
        "Retry-After": str(math.ceil(retry_after)),
        "retry-after-ms": str(round(retry_after * 1000)),
    }
    return ApiError(
        429,
        f"Rate limit exceeded (injected by the emulator). Retry after {retry_after:g} seconds.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers=headers,
    )


def _server_error() -> ApiError:
    return ApiError(
        500,
        "The server had an error while processing your request (injected by the emulator).",
        type="server_error",
        code="server_error",
    )
