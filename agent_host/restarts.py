"""Calls a restarting MCP server refused unrun, sent again once it is back (a rolling restart's drain).

A server that drains before it stops (`bankgate-mcp serve` on SIGTERM) answers a new call HTTP 503 with
`Retry-After` and a JSON-RPC error, having done nothing (a proxy's 503, in its own words, may come after the call ran:
it is not taken for one); on one machine it then exits and its successor starts, so for a moment
nothing listens. The call ran on neither, so rather than tell the model that its outcome is unknown, the host
waits as the server asked and sends it again under its idempotency key, for `RESTART_WAIT_SECONDS` at most in
all: a replica behind a load balancer is replaced well within that; a server gone for longer is answered "not
executed". A refused connection counts as the restart only while a call the server refused so waits for it
(`Restarts.awaiting`): then a request that could not connect (the call sent again, the tools listed meanwhile)
is answered 503 by the host itself, since it never left (and the SDK's client, failing to connect, would close
the whole session). Otherwise it is the usual "cannot be reached".

A server killed with a keyed call in flight (its response stream reset, or never started) is waited for the same
way, within the same wait (`RestartWait`): the host opens a session again every `RECONNECT_SECONDS` while the
server is not accepting connections, then sends the call again under its key; the server runs it at most once. One
still down when the wait is spent is answered "whether it ran is unknown".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp_types import INVALID_REQUEST

from agent_host.errors import sole_error

RESTART_WAIT_SECONDS = 10.0
"""How long one call waits, in all, for a server that refuses it unrun, or was killed under it, while it restarts."""
MAX_RETRY_AFTER_SECONDS = 5.0
"""The longest single wait taken from a `Retry-After` (a longer one still counts against the whole wait)."""
RECONNECT_SECONDS = 0.5
"""The wait before trying again a connection refused while the server restarts (its successor is starting)."""


@dataclass
class RestartWait:
    """One call's wait for its restarting server, `RESTART_WAIT_SECONDS` at most in all, whether it was refused unrun
    or its connection dropped under it: a call is never held longer, however the restart shows."""

    waited: float = 0.0

    async def pause(self, seconds: float) -> bool:
        """Wait `seconds` and say `True`, or say `False` at once if that would overrun the call's wait."""
        if self.waited + seconds > RESTART_WAIT_SECONDS:
            return False
        await anyio.sleep(seconds)
        self.waited += seconds
        return True


def refused_connection(error: BaseException) -> bool:
    """Whether `error` (or the one error a task group wrapped in it) is a connection refused: nothing listens."""
    return isinstance(sole_error(error) if isinstance(error, BaseExceptionGroup) else error, httpx2.ConnectError)


class Unrun(Exception):
    """A server refused a call unrun while it restarts; `wait`: seconds it asked for before the call is sent again."""

    def __init__(self, wait: float, reason: str) -> None:
        super().__init__(reason)
        self.wait = wait
        self.reason = reason


@dataclass
class Restarts:
    """The keyed calls a restarting server refused, as the host's HTTP client saw them (`note`, `Reconnecting`)."""

    meta_key: str
    """The request `_meta` key of a call's idempotency key."""
    refused: dict[str, float] = field(default_factory=dict)
    """Calls (by idempotency key) refused 503 unrun, with the seconds their server asked them to wait."""
    awaiting: set[str] = field(default_factory=set)
    """Calls being sent again after such a refusal: a connection refused meanwhile is the restart under way."""

    listings_refused: int = 0
    """Tool listings refused 503: a listing that failed while this grew was refused by a server restarting, which
    ends no session (the calls running on it finish)."""

    async def note(self, response: httpx2.Response) -> None:
        """Response hook: remember a call the server refused unrun (503), and count refused listings."""
        if response.status_code != 503:
            return
        if (key := self.call_key(response.request)) is not None:
            if await _refused_by_the_server(response):
                self.refused[key] = retry_after(response.headers.get("retry-after"))
        elif (message := _message(response.request)) is not None and message.get("method") == "tools/list":
            self.listings_refused += 1

    def call_key(self, request: httpx2.Request) -> str | None:
        """The idempotency key of a `tools/call` request, read from its JSON body (`None`: not one, or unkeyed)."""
        message = _message(request)
        if message is None or message.get("method") != "tools/call":
            return None
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        key = meta.get(self.meta_key) if isinstance(meta, dict) else None
        return key if isinstance(key, str) else None


async def _refused_by_the_server(response: httpx2.Response) -> bool:
    """Whether a 503 is the MCP server's own refusal, a JSON-RPC error (or `Reconnecting`'s, made so): a proxy in
    front of it answers 503 too, in its own words, when its upstream went away, also after it forwarded the call, which
    may then have run."""
    if not response.headers.get("content-type", "").lower().startswith("application/json"):
        return False
    try:
        body: Any = json.loads(await response.aread())
    except (ValueError, httpx2.HTTPError):
        return False
    return isinstance(body, dict) and body.get("jsonrpc") == "2.0" and isinstance(body.get("error"), dict)


def _message(request: httpx2.Request) -> dict[str, Any] | None:
    """The JSON-RPC message a POST carries (`None`: another request, or no JSON object)."""
    if request.method != "POST":
        return None
    try:
        message: Any = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None
    return message if isinstance(message, dict) else None


class Reconnecting(httpx2.AsyncHTTPTransport):
    """The HTTP transport, answering for the server while a call awaits its restart: a request whose connection is
    refused then gets a 503 of the host's own making (it never left), so the call waits and is sent again."""

    def __init__(self, restarts: Restarts) -> None:
        super().__init__()
        self.restarts = restarts

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await super().handle_async_request(request)
        except httpx2.ConnectError as error:
            if request.method != "POST" or not self.restarts.awaiting:
                raise
            message = f"The MCP server is not accepting connections ({error}); nothing was sent."
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
            return httpx2.Response(503, headers={"retry-after": f"{RECONNECT_SECONDS:g}"}, json=body, request=request)


def retry_after(value: str | None) -> float:
    """Seconds to wait from a `Retry-After` in seconds (an HTTP date, or none, reads as one second), at most
    `MAX_RETRY_AFTER_SECONDS`."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 1.0
    return min(seconds, MAX_RETRY_AFTER_SECONDS)
