"""A request the HTTP layer answers itself, before the SDK sees it: a JSON-RPC error without an id, as the
SDK's own refusals are shaped (`INVALID_REQUEST`, as its transport's), so a client reads it like theirs.

Never -32000: the SDK's clients read that code as their connection closed (`CONNECTION_CLOSED`), so a client
refused one request would drop its session and the calls in flight on it."""

import json

from mcp_types import INVALID_REQUEST
from starlette.types import Send


async def refuse(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer `status` with `message` (and `headers`), nothing else done."""
    error = {"code": INVALID_REQUEST, "message": message}
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
