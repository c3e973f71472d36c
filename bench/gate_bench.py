"""A full gated transfer against the SDK's bare approval tool with a no-op body.

    python -m bench.gate_bench [--calls N] [--json]

Ours: policy + an approval answered at once by the scripted responder + ledger + audit.
Baseline: a bare `MCPServer` tool whose resolver elicits the same kind of form and whose
body does nothing, shown for scale. Goal (#16): >= 0.85 of the floor's rate in-memory, >= 0.95
over HTTP. The floor row (`bench.bare_server.approve_durably`: the same question plus a SQLite commit
of the question before asking, which need not wait for the disk, and a durable one after the
answer, both on the event loop, and nothing else) is the best a gate that keeps its questions
across a process crash and its outcomes across a power cut can reach here. The required-work
row (`bench.required_work.approve_recorded`) adds what bankgate's promises also need (the
policy's decision before asking and again at settlement; the caller's open questions counted,
the question stored as shown with its reference and deadline, bound to its arguments' digest,
and its signed audit record; the answering round's read of the question it was shown; the
approval used once and in time, the transfer posted as two journal entries and the outcome's
audit record signed in the durable transaction): its ratio to the floor is
the most any such gate reaches on that goal.
"""

import argparse
import logging
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import mcp_types as types
from mcp import Client
from mcp.client import ClientRequestContext

from bench.bare_server import bare_server
from bench.servers import BARE_ARGS, bench_settings, http_client, http_server, ours_args
from bench.timing import FLOOR, REQUIRED, Figure, measure_rounds, report
from mcp_server.app import build_server, open_state

TRANSFER = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "0.01"}


async def approve(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"approve": True})


def caller(client: Client, name: str) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await client.call_tool(name, TRANSFER)
        assert not result.is_error and "executed" in str(result.structured_content or result.content), result
        return result

    return call


async def pair(path: str, ours: Client, bare: Client, calls: int) -> list[tuple[Figure, Figure]]:
    """Ours against the floor (judged), both beside the bare approval no-op (for scale), and the
    required work against the floor (the most the goal can ask) with ours against it."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(ours)
        await stack.enter_async_context(bare)
        base, mine, floor, required = await measure_rounds(
            path,
            [
                ("bare approval no-op", [caller_bare(bare, "approve_noop")]),
                ("gated transfer_funds", [caller(ours, "transfer_funds")]),
                (f"{FLOOR}question + outcome commits", [caller_bare(bare, "approve_durably")]),
                (f"{REQUIRED}policy, approval, audit", [caller_bare(bare, "approve_recorded")]),
            ],
            calls,
        )
        return [(mine, floor), (mine, base), (floor, base), (required, floor), (mine, required)]


def caller_bare(client: Client, name: str) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await client.call_tool(name, TRANSFER)
        assert not result.is_error and ("accept" in str(result.content) or "executed" in str(result.content)), result
        return result

    return call


async def run(calls: int, as_json: bool) -> None:
    workdir = Path(tempfile.mkdtemp())
    settings = bench_settings(workdir)
    db_url = settings.db_url
    state = open_state(settings, create=True, seed=True)
    state.ledger.deposit("ACC-001", "1000000")
    server, bare = build_server(state, settings), bare_server()
    logging.disable(logging.INFO)
    pairs = [
        *await pair(
            "in-memory 2026-07-28",
            Client(server, elicitation_callback=approve),
            Client(bare, elicitation_callback=approve),
            calls,
        ),
        *await pair(
            "in-memory 2025-11-25",
            Client(server, elicitation_callback=approve, mode="legacy"),
            Client(bare, elicitation_callback=approve, mode="legacy"),
            calls,
        ),
    ]
    with http_server(ours_args(db_url, workdir)) as ours_url, http_server(BARE_ARGS) as bare_url:
        for mode, name in (("auto", "2026-07-28"), ("legacy", "2025-11-25")):
            pairs.extend(
                await pair(
                    f"HTTP {name}",
                    http_client(ours_url, elicitation_callback=approve, mode=mode),
                    http_client(bare_url, elicitation_callback=approve, mode=mode),
                    calls // 3,
                )
            )
    problems = state.ledger.check_invariants()
    report("gate_bench: gated transfer vs its floor", pairs, goal=0.85, as_json=as_json, http_goal=0.95)
    if not as_json:
        print(f"ledger invariants after the run: {problems or 'hold'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=600, help="gated calls per in-memory path (HTTP: a third)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    anyio.run(run, args.calls, args.json)


if __name__ == "__main__":
    main()
