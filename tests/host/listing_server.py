"""A stand-in MCP server over Streamable HTTP whose tool list the test picks: a server restarted as another
release, listing other tools (one gone, one added, one with changed arguments), for the host's reconnect tests.

`python -m tests.host.listing_server PORT EDITION [LEDGER]`; every tool answers `executed` with the arguments it got,
and each transfer it runs is added to the file LEDGER, one line each, so a test can tell whether money moved.
Edition `draining` is a server between releases: it refuses every request 503 with `Retry-After`, nothing done,
and once a refusal is sent writes `refused METHOD PATH` to stderr (what a test waits for); `with_fees_unlisted` is
`with_fees` refusing only its tool listings so. Edition `first_behind_a_proxy` is `first` behind a proxy whose
upstream goes away under the first transfer: the transfer runs, its answer is lost, and the proxy answers it, and every
request after it, 503 in plain text (as Envoy does for an upstream reset), not a refusal of the server's own.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ledger: Path | None = None
"""Where this process writes the transfers it runs, if anywhere."""


def _moved(message: str) -> dict[str, Any]:
    if _ledger is not None:
        with _ledger.open("a", encoding="utf-8") as ledger:
            ledger.write(f"{message}\n")
    return {"status": "executed", "message": message}


def get_account_balance(account_id: str) -> dict[str, Any]:
    """Read an account's balance."""
    return {"status": "executed", "message": f"{account_id} holds 100.00 USD.", "balance": "100.00"}


def transfer_funds(from_account: str, to_account: str, amount: str) -> dict[str, Any]:
    """Move money between two accounts."""
    return _moved(f"Moved {amount} from {from_account} to {to_account}.")


def transfer_funds_in_cents(from_account: str, to_account: str, amount: str, fee_cents: int = 500) -> dict[str, Any]:
    """Move money between two accounts, charging a fee unless told otherwise."""
    return _moved(f"Moved {amount} (fee {fee_cents}) from {from_account} to {to_account}.")


def close_account(account_id: str) -> dict[str, Any]:
    """Close an empty account."""
    return {"status": "executed", "message": f"Closed {account_id}."}


EDITIONS: dict[str, dict[str, Callable[..., dict[str, Any]]]] = {
    "first": {"get_account_balance": get_account_balance, "transfer_funds": transfer_funds},
    "without_transfers": {"get_account_balance": get_account_balance, "close_account": close_account},
    "with_fees": {"get_account_balance": get_account_balance, "transfer_funds": transfer_funds_in_cents},
}


async def _draining(scope: Scope, receive: Receive, send: Send) -> None:
    """Every request refused as a server draining before it stops refuses new work (`bankgate-mcp serve`)."""
    if scope["type"] != "http":
        return
    error = {"code": INVALID_REQUEST, "message": "The server is restarting; nothing was done."}
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    print(f"refused {scope['method']} {scope['path']}", file=sys.stderr, flush=True)


def _unlisted(app: ASGIApp) -> ASGIApp:
    """`app`, refusing its tool listings as `_draining` does (a successor not ready to list them yet, say)."""

    async def refusing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, replay = await _read(receive)
        if json.loads(body).get("method") == "tools/list":
            return await _draining(scope, receive, send)
        await app(scope, replay, send)

    return refusing


def _behind_a_proxy(app: ASGIApp) -> ASGIApp:
    """`app` behind a proxy that loses its upstream under the first transfer, after forwarding it (see the module)."""
    lost = False

    async def proxied(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal lost
        if scope["type"] == "http" and lost:
            return await _reset(scope, receive, send)
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, replay = await _read(receive)
        message = json.loads(body)
        if message.get("method") != "tools/call" or message["params"]["name"] != "transfer_funds":
            return await app(scope, replay, send)

        async def swallowed(message: Message) -> None:
            pass

        await app(scope, replay, swallowed)  # the transfer runs; its answer never reaches the client
        lost = True
        await _reset(scope, receive, send)

    return proxied


async def _read(receive: Receive) -> tuple[bytes, Receive]:
    """A request's body, and a `receive` that hands it over again (then what `receive` does)."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay


async def _reset(scope: Scope, receive: Receive, send: Send) -> None:
    """A proxy's 503 for an upstream that reset: plain text, no word of whether the request ran."""
    body = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"
    await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def main(port: int, edition: str, ledger: Path | None = None) -> None:
    global _ledger
    _ledger = ledger
    if edition == "draining":
        uvicorn.run(_draining, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
        return
    server: MCPServer[Any] = MCPServer("listing-server")
    unlisted, proxied = edition.endswith("_unlisted"), edition.endswith("_behind_a_proxy")
    for name, tool in EDITIONS[edition.removesuffix("_unlisted").removesuffix("_behind_a_proxy")].items():
        server.add_tool(tool, name=name, structured_output=True)
    if unlisted or proxied:
        wrapped = (_unlisted if unlisted else _behind_a_proxy)(server.streamable_http_app())
        uvicorn.run(wrapped, host="127.0.0.1", port=port, log_level="warning")
    else:
        server.run("streamable-http", host="127.0.0.1", port=port)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]) if len(sys.argv) > 3 else None)
