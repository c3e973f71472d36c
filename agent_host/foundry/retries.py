"""The openai SDK's timeout and retry rules, for the raw REST path (so both paths behave alike).

Mirrors `openai/_constants.py` (`DEFAULT_TIMEOUT`, `DEFAULT_MAX_RETRIES`,
`INITIAL_RETRY_DELAY`, `MAX_RETRY_DELAY`, `MAX_RETRY_AFTER_DELAY`) and `BaseClient`'s
`_should_retry`, `_parse_retry_after_header` and `_calculate_retry_timeout` in
`openai/_base_client.py`; `tests/host/test_parts.py` checks the numbers against the installed SDK.
`paced` adds a rule of the host's own to both paths' streams: see its docstring.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

import anyio
import httpx2

TIMEOUT = httpx2.Timeout(600.0, connect=5.0)
"""Ten minutes for a response (a model may think long), five seconds to connect."""
MAX_RETRIES = 2
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
MAX_RETRY_AFTER_S = 120.0
"""A server hint up to two minutes is waited for; a longer one is not retried at all."""

_RETRIED_STATUSES = frozenset({408, 409, 429})


def server_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks to wait: `retry-after-ms`, else `retry-after` (seconds or HTTP date)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(name)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:
            continue
    date = lowered.get("retry-after")
    parsed = email.utils.parsedate_tz(date) if date else None
    return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an error answer is worth another attempt (the server's `x-should-retry` wins)."""
    hint = server_delay(headers)
    if hint is not None and math.isfinite(hint) and hint > MAX_RETRY_AFTER_S:
        return False
    explicit = {key.lower(): value for key, value in headers.items()}.get("x-should-retry")
    if explicit in ("true", "false"):
        return explicit == "true"
    return status in _RETRIED_STATUSES or status >= 500


def retry_delay(headers: Mapping[str, str], attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry `attempt` (0-based): the server's hint, else jittered exponential backoff."""
    hint = server_delay(headers)
    if hint is not None and math.isfinite(hint) and 0 < hint <= MAX_RETRY_AFTER_S:
        return hint
    backoff = min(INITIAL_RETRY_DELAY_S * 2.0 ** min(attempt, 1000), MAX_RETRY_DELAY_S)
    return max(0.0, backoff * (1 - 0.25 * rand()))


Event = TypeVar("Event")


async def paced(events: AsyncIterator[Event], seconds: float | None) -> AsyncIterator[Event]:
    """`events`, raising `TimeoutError` when the next one takes longer than `seconds`.

    The read timeout counts bytes, and SSE comment lines (keep-alives) are bytes that carry no event: a
    service sending nothing else would hold the host forever. This counts the events themselves."""
    while True:
        try:
            with anyio.fail_after(seconds):
                event = await anext(events)
        except StopAsyncIteration:
            return
        yield event
