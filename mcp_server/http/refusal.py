"""A request the HTTP layer answers itself, before the SDK sees it: a JSON-RPC error without an id, as the
SDK's own refusals are shaped, so a client reads it like theirs."""

import json

from starlette.types import Send


async def refuse(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer `status` with `message` (and `headers`), nothing else done."""
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
