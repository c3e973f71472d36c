"""Headers on every response of the web front end, not only the chat page's: the page is served from the
static folder too (`/static/index.html`), and a header set per route leaves that address framable."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
"""The chat approves payments: no other page may frame it under a decoy (clickjacking), it runs only its own
script and talks only to this server, no response is read as another type, and no address leaves in a Referer."""


class Secured:
    """`app` with `HEADERS` on every response: the guard's refusals, the router's 404s and server errors too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(HEADERS)
            await send(message)

        await self.app(scope, receive, secured if scope["type"] == "http" else send)
