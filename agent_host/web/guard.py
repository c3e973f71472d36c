"""Who may talk to the web front end: Host and Origin checks always, a bearer token off loopback.

The page can approve payments, so a foreign page must not drive it: a request whose Host is not
one of ours (DNS rebinding) or whose Origin is another site (cross-site POST) is refused before it
reaches the app. With a token, every API request must carry it (`Authorization: Bearer`); the
page and its static files stay public because they hold nothing, and the page reads the token
from its URL fragment, which browsers never send to a server.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
PUBLIC_PATHS = ("/", "/healthz")
PUBLIC_PREFIXES = ("/static/",)


def is_loopback(host: str) -> bool:
    return host.strip("[]") in LOOPBACK_NAMES


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def is_host_name(name: str) -> bool:
    """A name a Host header can carry, without its port: a DNS name, an IPv4 address or a bracketed IPv6 one."""
    if name.startswith("[") and name.endswith("]"):
        return bool(re.fullmatch(r"[0-9A-Fa-f:.]+", name[1:-1])) and ":" in name
    return bool(_HOST_NAME.fullmatch(name))


class Guard:
    """ASGI middleware enforcing the module's rules; refusals name the rule, never echo the request."""

    def __init__(self, app: ASGIApp, *, token: str | None, names: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token
        self.names = LOOPBACK_NAMES | {name.strip("[]").lower() for name in names}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await PlainTextResponse(refusal[1], status_code=refusal[0])(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if _hostname(host) not in self.names:
            return 403, "Refused: the Host header does not name this server."
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, "Refused: requests from another origin are not accepted."
        path: str = scope["path"]
        if self.token is None or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        scheme, _, presented = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(presented.encode(), self.token.encode()):
            return 401, "Refused: this server needs its bearer token (Authorization: Bearer ...)."
        return None


def _hostname(host: str) -> str:
    """`host[:port]` without the port, brackets and case."""
    return (urlsplit(f"//{host}").hostname or "").lower()
