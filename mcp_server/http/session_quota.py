"""Open Streamable HTTP sessions, capped per principal.

The SDK caps open sessions for all callers together (`max_sessions`): a principal opening sessions
until that cap would lock every other principal out until theirs went idle (30 minutes). This
middleware, between authentication and the SDK's endpoint, keeps each principal's open sessions
under `limit`: a request that would open another (one that names no session and no 2026-07-28
protocol version, as the SDK routes them) is answered 429 and reaches nothing.

A session counts from the response that names it (`mcp-session-id`) until the SDK would have
ended it: a DELETE of it answered, a request for it answered 404 (gone), or no request of it in
flight for the SDK's idle timeout. Sessions that would open in the same instant are counted as
they are admitted, so concurrent opening requests cannot overshoot the cap.
"""

import json
import time
from dataclasses import dataclass, field

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SESSION = MCP_SESSION_ID_HEADER.lower().encode("ascii")
_VERSION = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")


@dataclass
class _Session:
    in_flight: int = 0
    last_seen: float = field(default_factory=time.monotonic)


class SessionQuota:
    """ASGI middleware: at most `limit` open sessions per principal (see the module docstring)."""

    def __init__(self, app: ASGIApp, limit: int, idle_timeout: float) -> None:
        self.app, self.limit, self.idle_timeout = app, limit, idle_timeout
        self._open: dict[str, dict[str, _Session]] = {}
        """Per principal, its sessions by id."""
        self._opening: dict[str, int] = {}
        """Per principal, the opening requests admitted and not answered yet."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if scope["type"] != "http" or not isinstance(user, AuthenticatedUser):
            await self.app(scope, receive, send)
            return
        principal = user.access_token.client_id
        headers = dict(scope["headers"])
        named = headers.get(_SESSION)
        if named is not None:
            await self._continue(principal, named.decode("latin-1"), scope, receive, send)
        elif _opens_a_session(scope["method"], headers.get(_VERSION)):
            await self._open_one(principal, scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _open_one(self, principal: str, scope: Scope, receive: Receive, send: Send) -> None:
        sessions = self._live(principal)
        if len(sessions) + self._opening.get(principal, 0) >= self.limit:
            await _refuse(send, self.limit)
            return
        self._opening[principal] = self._opening.get(principal, 0) + 1
        opened: list[str] = []

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened.extend(v.decode("latin-1") for k, v in message.get("headers", []) if k.lower() == _SESSION)
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self._opening[principal] -= 1
            if not self._opening[principal]:
                del self._opening[principal]
            for session_id in opened:
                self._open.setdefault(principal, {})[session_id] = _Session()

    async def _continue(self, principal: str, session_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        session = self._open.get(principal, {}).get(session_id)
        if session is None:  # not this principal's (the SDK answers 404), or opened before a restart
            await self.app(scope, receive, send)
            return
        session.in_flight += 1
        status: list[int] = []

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            session.in_flight -= 1
            session.last_seen = time.monotonic()
            ended = status and (status[0] == 404 or (scope["method"] == "DELETE" and status[0] < 300))
            if ended:
                self._open[principal].pop(session_id, None)

    def _live(self, principal: str) -> dict[str, _Session]:
        """`principal`'s sessions, forgetting those the SDK has ended for idleness meanwhile."""
        sessions = self._open.get(principal, {})
        horizon = time.monotonic() - self.idle_timeout
        for session_id in [k for k, s in sessions.items() if not s.in_flight and s.last_seen < horizon]:
            del sessions[session_id]
        return sessions


def _opens_a_session(method: str, version: bytes | None) -> bool:
    """Whether the SDK would open a session for this request (`StreamableHTTPSessionManager._handle_request`):
    a POST naming no session, and no protocol version or a 2025 handshake one."""
    return method == "POST" and (version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32000,
                "message": f"This principal already has {limit} open sessions; end one (DELETE) or let one go idle "
                "before opening another.",
            },
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
