"""Open Streamable HTTP sessions, capped per principal.

The SDK caps open sessions for all callers together (`max_sessions`): a principal opening sessions
until that cap would lock every other principal out until theirs went idle (30 minutes). This
middleware, between authentication and the SDK's endpoint, keeps each principal's open sessions
under `limit`: a request that would open another (a POST naming no session, with no protocol version or
a 2025 handshake one) is answered 429 and reaches nothing. Requests are classified by the first
`mcp-session-id` and `mcp-protocol-version` header, as the SDK routes them; 2026-07-28 requests open and
end no session whatever they name.

A session counts from the response that names it (`mcp-session-id`), unless its opening request then fails
(the SDK discards it), until the SDK would have ended it: a DELETE of it by its opener answered, its
opener's request for it answered 404 (gone), or no request of it in flight for the SDK's idle timeout.
Idle sessions are forgotten when their principal opens another, and every principal's at most once per idle
timeout, so principals that never come back leave nothing behind.
Sessions that would open in the same instant are counted as they are admitted, so concurrent opening
requests cannot overshoot the cap.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext, authorization_context
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_server.http.refusal import refuse

_SESSION = MCP_SESSION_ID_HEADER.lower().encode("ascii")
_VERSION = MCP_PROTOCOL_VERSION_HEADER.lower().encode("ascii")


@dataclass
class _Session:
    owner: AuthorizationContext
    """The credential that opened it: the SDK answers any other 404 and leaves the session open."""
    last_seen: float
    in_flight: int = 0


class SessionQuota:
    """ASGI middleware: at most `limit` open sessions per principal (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, limit: int, idle_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app, self.limit, self.idle_timeout = app, limit, idle_timeout
        self._clock = clock
        """Seconds, monotonic; injectable so tests step idleness instead of sleeping it."""
        self._open: dict[str, dict[str, _Session]] = {}
        """Per principal, its sessions by id (no entry for a principal without any)."""
        self._opening: dict[str, int] = {}
        """Per principal, the opening requests admitted and not answered yet."""
        self._swept = clock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if scope["type"] != "http" or not isinstance(user, AuthenticatedUser):
            await self.app(scope, receive, send)
            return
        version, named = _routing_headers(scope)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            await self.app(scope, receive, send)  # the SDK's 2026-07-28 path: no session, whichever it names
            return
        principal, owner = user.access_token.client_id, authorization_context(user)
        if named is not None:
            await self._continue(principal, owner, named, scope, receive, send)
        elif scope["method"] == "POST":
            await self._open_one(principal, owner, scope, receive, send)
        else:
            await self.app(scope, receive, send)  # the SDK refuses it (no session id) and keeps no session

    async def _open_one(
        self, principal: str, owner: AuthorizationContext, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a request that may open a session. The session counts from the response that names it, as in
        flight until that request ends (a request for it may arrive meanwhile), and only if the request ends
        normally: the SDK discards the session of an opening request that fails or is cancelled."""
        self._forget_idle()
        if len(self._live(principal)) + self._opening.get(principal, 0) >= self.limit:
            await refuse(
                send,
                429,
                f"This principal already has {self.limit} open sessions; end one (DELETE) or let one go idle before "
                "opening another.",
            )
            return
        self._opening[principal] = self._opening.get(principal, 0) + 1
        answered, opened = False, []

        async def watched(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._admitted(principal)
                session_id = _named_session(message)
                if session_id is not None:
                    self._open.setdefault(principal, {})[session_id] = _Session(owner, self._clock(), in_flight=1)
                    opened.append(session_id)
            await send(message)

        finished = False
        try:
            await self.app(scope, receive, watched)
            finished = True
        finally:
            if not answered:
                self._admitted(principal)
            for session_id in opened:
                self._release(principal, session_id, ended=not finished)

    async def _continue(
        self, principal: str, owner: AuthorizationContext, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve a request for a session, keeping the session counted while it is in flight; a session the SDK
        answers as gone (404) or ends (DELETE) stops counting. Only its opener's requests are watched: the SDK
        answers anyone else 404 and keeps the session."""
        session = self._open.get(principal, {}).get(session_id)
        if session is None or session.owner != owner:  # not this credential's, or opened before a restart
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
            ended = bool(status) and (status[0] == 404 or (scope["method"] == "DELETE" and status[0] < 300))
            self._release(principal, session_id, ended=ended)

    def _admitted(self, principal: str) -> None:
        """One opening request of `principal` is answered (or over): it no longer counts as opening."""
        self._opening[principal] -= 1
        if not self._opening[principal]:
            del self._opening[principal]

    def _release(self, principal: str, session_id: str, *, ended: bool) -> None:
        """A request for the session is over; forget the session if that ended it."""
        sessions = self._open.get(principal, {})
        session = sessions.get(session_id)
        if session is None:
            return
        session.in_flight -= 1
        session.last_seen = self._clock()
        if ended:
            del sessions[session_id]
            if not sessions:
                del self._open[principal]

    def _forget_idle(self) -> None:
        """Forget every principal's idle sessions, at most once per idle timeout: `_live` forgets a principal's
        own only when it opens another, and one that never does would keep them for good."""
        now = self._clock()
        if now - self._swept < self.idle_timeout:
            return
        self._swept = now
        for principal in list(self._open):
            self._live(principal)

    def _live(self, principal: str) -> dict[str, _Session]:
        """`principal`'s sessions, forgetting those the SDK has ended for idleness meanwhile."""
        sessions = self._open.get(principal, {})
        horizon = self._clock() - self.idle_timeout
        for session_id in [k for k, s in sessions.items() if not s.in_flight and s.last_seen < horizon]:
            del sessions[session_id]
        if not sessions:
            self._open.pop(principal, None)
        return sessions


def _routing_headers(scope: Scope) -> tuple[str | None, str | None]:
    """The first `mcp-protocol-version` and `mcp-session-id` values, the ones the SDK routes on (a repeated
    header's later values are not), read in one pass: every request to the endpoint comes through here."""
    version: bytes | None = None
    session: bytes | None = None
    for key, value in scope["headers"]:
        if key == _VERSION and version is None:
            version = value
        elif key == _SESSION and session is None:
            session = value
    return (
        None if version is None else version.decode("latin-1"),
        None if session is None else session.decode("latin-1"),
    )


def _named_session(start: Message) -> str | None:
    """The session a response opened: the one it names, if it succeeded (the SDK keeps no session otherwise)."""
    if start["status"] >= 400:
        return None
    return next((v.decode("latin-1") for k, v in start.get("headers", []) if k.lower() == _SESSION), None)
