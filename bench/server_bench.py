"""`get_account_balance` against a bare echo tool on an identical `MCPServer`, per transport.

    python -m bench.server_bench [--calls N] [--json]

Goal (#16): >= 0.9 of the floor's rate on every path; the bare echo is shown for scale. The
floor row (`bench.bare_server.read_shaped`: one indexed SQLite read returned in the balance
output schema, no ledger, no policy) is the best any balance tool can reach here. Both servers
run in this one process (in-memory) or as subprocesses started the same way (stdio, HTTP),
measured in alternating rounds. The required-work row (`bench.required_work.read_entitled`)
adds what bankgate must also do: read the caller's entitlements with the balance (one
statement) and evaluate the visibility condition and the tool's rule; its ratio to the floor
is the most any such tool reaches on that goal.
"""

import argparse
import logging
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from mcp import Client

from bench.bare_server import bare_server
from bench.servers import BARE_ARGS, bench_settings, http_client, http_server, ours_args, stdio_params
from bench.timing import FLOOR, REQUIRED, Figure, measure_rounds, report
from mcp_server.app import build_server, open_state

BALANCE = ("get_account_balance", {"account_id": "ACC-001"})
ECHO = ("echo", {"account_id": "ACC-001"})
READ_SHAPED = ("read_shaped", {"account_id": "ACC-001"})
READ_ENTITLED = ("read_entitled", {"account_id": "ACC-001"})


def caller(client: Client, tool: tuple[str, dict[str, str]]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await client.call_tool(*tool)
        assert not result.is_error, result
        return result

    return call


async def pair(path: str, ours: list[Client], bare: list[Client], calls: int) -> list[tuple[Figure, Figure]]:
    """Ours against the floor (judged), both beside the bare echo (for scale), and the required
    work against the floor (the most the goal can ask) with ours against it."""
    async with AsyncExitStack() as stack:
        for client in ours + bare:
            await stack.enter_async_context(client)
        base, mine, floor, required = await measure_rounds(
            path,
            [
                ("bare echo", [caller(c, ECHO) for c in bare]),
                ("get_account_balance", [caller(c, BALANCE) for c in ours]),
                (f"{FLOOR}one read, balance schema", [caller(c, READ_SHAPED) for c in bare]),
                (f"{REQUIRED}entitlements and policy", [caller(c, READ_ENTITLED) for c in bare]),
            ],
            calls,
        )
        return [(mine, floor), (mine, base), (floor, base), (required, floor), (mine, required)]


async def run(calls: int, as_json: bool) -> None:
    workdir = Path(tempfile.mkdtemp())
    settings = bench_settings(workdir)
    db_url = settings.db_url
    server = build_server(open_state(settings, create=True, seed=True), settings)
    logging.disable(logging.INFO)
    pairs = [
        *await pair("in-memory 2026-07-28", [Client(server)], [Client(bare_server())], calls),
        *await pair(
            "in-memory 2025-11-25", [Client(server, mode="legacy")], [Client(bare_server(), mode="legacy")], calls
        ),
        *await pair(
            "stdio 2026-07-28",
            [Client(stdio_params(ours_args(db_url, workdir)))],
            [Client(stdio_params(BARE_ARGS))],
            calls // 2,
        ),
    ]
    with http_server(ours_args(db_url, workdir)) as ours_url, http_server(BARE_ARGS) as bare_url:
        for clients in (1, 8):
            pairs.extend(
                await pair(
                    f"HTTP {clients} client{'s' if clients > 1 else ''} 2026-07-28",
                    [http_client(ours_url) for _ in range(clients)],
                    [http_client(bare_url) for _ in range(clients)],
                    calls // (2 * clients) or 1,
                )
            )
    report("server_bench: get_account_balance vs its floor", pairs, goal=0.9, as_json=as_json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000, help="calls per in-memory path (others scale down)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args()
    anyio.run(run, args.calls, args.json)


if __name__ == "__main__":
    main()
