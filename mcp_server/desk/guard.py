"""Web security for every desk request: the `/mcp` Host/Origin allowlist, Origin required and CSRF
token checked on every POST, cookies HttpOnly + SameSite=Strict (`__Host-` over https: `cookies`), and
headers that keep every response out of frames, caches and referrers (`Secured`)."""

import hmac

from mcp.server.transport_security import TransportSecurityMiddleware
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_server.desk.config import DeskConfig
from mcp_server.desk.cookies import Cookies
from mcp_server.desk.sessions import csrf_token

CSRF_HEADER = "x-csrf-token"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make form POSTs send `Origin: null`
    "Cross-Origin-Opener-Policy": "same-origin",  # a page that opened the desk cannot steer or read its tab later
    "Cache-Control": "no-store",
}


class Secured:
    """The desk app with `HEADERS` on every response it sends: the router's own 404 and 405, static files
    and server errors as well as the pages and POSTs the desk renders."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(HEADERS)
            await send(message)

        await self.app(scope, receive, secured if scope["type"] == "http" else send)


class Guard:
    def __init__(self, config: DeskConfig) -> None:
        self.cookies = Cookies(config)
        self._hosts = TransportSecurityMiddleware(config.security)

    async def refusal(self, request: Request, csrf: str | None = None, *, signed_out: bool = False) -> Response | None:
        """Why this request is refused (Host/Origin, and for a POST a missing Origin or CSRF token); None if not.
        `csrf` is the token the POST carried (header or form field); `signed_out`: the POST is one a signed-out
        visitor makes (sign in, enroll, sign out)."""
        refused = await self._hosts.validate_request(request, is_post=False)
        if refused is not None or request.method != "POST":
            return refused
        if not request.headers.get("origin"):
            return Response("Missing Origin header", status_code=403)
        # A signed-out act takes either cookie's token: a page followed to from another site was sent neither
        # (SameSite=Strict), so its form carries a new pre-session's token, while the browser still holds, and sends
        # the form's POSTs, a session. A signed-in act takes the session's alone, as every page it is done from
        # carries: over http://localhost a page on another port may plant a pre-session, whose token it knows.
        # As bytes: `compare_digest` raises on a str with non-ASCII characters, which any client can send.
        session, pre = request.cookies.get(self.cookies.session), request.cookies.get(self.cookies.pre)
        carried = [session, pre] if signed_out else [session or pre]
        expected = [csrf_token(cookie).encode() for cookie in carried if cookie]
        if csrf is None or not any(hmac.compare_digest(csrf.encode(), token) for token in expected):
            return Response("Missing or invalid CSRF token; reload the page", status_code=403)
        return None

    def csrf(self, request: Request) -> str | None:
        """The CSRF token of this browser: derived from its session cookie, else from its pre-session cookie."""
        cookie = request.cookies.get(self.cookies.session) or request.cookies.get(self.cookies.pre)
        return csrf_token(cookie) if cookie else None
