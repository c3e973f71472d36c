"""The agent host's per-turn overhead, beside direct MCP calls of the same tools in the same run.

    python -m bench.host_bench [--turns N] [--json]

One turn is one user request run to its final answer: a Responses round trip to the (offline)
emulator that returns a function call, the MCP call, and a second round trip with the output.
Each turn is split into time spent in Responses round trips, time spent in MCP calls, and the
rest (the host's own work: request building, reply and stream assembly, JSON, display). The
baselines are the same MCP tools called directly on the same session, and a Responses round trip
that needs no tool, on each wire path. Approvals are answered at once by an in-process approver,
so what is measured is machinery, not a person's thinking time.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
from rich.console import Console

from agent_host.approvers import Answer, Question
from agent_host.conversation import Conversation, ResponsesTransport
from agent_host.display import Display
from agent_host.emulator import running_emulator
from agent_host.foundry.function_tools import FunctionCall, FunctionTool, Toolbox
from agent_host.foundry.pending_keys import PendingKeys
from agent_host.foundry.transport_rest import RestTransport
from agent_host.host import Host, open_host
from agent_host.mcp_link import DEMO_LEDGER, McpTarget, ToolResult
from agent_host.settings import HostSettings
from bench.progress import progress
from bench.servers import audit_key
from mcp_server.audit.keys import KEY_FILE_ENV

BALANCE = "What is the balance of ACC-001?"
TRANSFER = "Transfer $1 from ACC-001 to ACC-002."
PLAIN = "Tell me a one-line story about an astronaut."


class ApproveAll:
    """Says yes at once (typing back any confirmation): the bench times machinery, not people."""

    name = "approve-all"

    async def answer(self, question: Question) -> Answer:
        return Answer("accept", True, question.confirmation_value)


@dataclass
class Split:
    """Where one turn's time went."""

    responses_s: float = 0.0
    responses_n: int = 0
    mcp_s: float = 0.0
    mcp_n: int = 0


class TimedTransport:
    """A wire path that adds the time of each Responses round trip to ``split``."""

    def __init__(self, inner: ResponsesTransport, split: Split) -> None:
        self.inner = inner
        self.split = split
        self.name = inner.name

    async def create(self, request: Mapping[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return await self.inner.create(request)
        finally:
            self.split.responses_s += time.perf_counter() - started
            self.split.responses_n += 1

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Times the wire only: the consumer's work between events is left out."""
        events = self.inner.stream(request)
        while True:
            started = time.perf_counter()
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
            finally:
                self.split.responses_s += time.perf_counter() - started
            yield event
        self.split.responses_n += 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedToolbox(Toolbox):
    """The host's toolbox, adding the time of each MCP call to ``split``."""

    def __init__(self, toolbox: Toolbox, split: Split) -> None:
        super().__init__(toolbox.link)
        self.tools = toolbox.tools
        self.split = split

    async def run(self, call: FunctionCall, given: Mapping[str, FunctionTool], pending: PendingKeys) -> ToolResult:
        started = time.perf_counter()
        try:
            return await super().run(call, given, pending)
        finally:
            self.split.mcp_s += time.perf_counter() - started
            self.split.mcp_n += 1


@dataclass(frozen=True)
class Row:
    path: str
    subject: str
    n: int
    p50_ms: float
    p90_ms: float
    responses_ms: float | None = None
    responses_per_turn: float | None = None
    mcp_ms: float | None = None
    mcp_per_turn: float | None = None
    host_ms: float | None = None


def _row(path: str, subject: str, totals: list[float], splits: list[Split] | None = None) -> Row:
    ordered = sorted(totals)
    p50, p90 = statistics.median(ordered), ordered[int(len(ordered) * 0.9)]
    if not splits:
        return Row(path, subject, len(totals), p50 * 1e3, p90 * 1e3)
    responses = statistics.median(s.responses_s for s in splits)
    mcp = statistics.median(s.mcp_s for s in splits)
    host = statistics.median(t - s.responses_s - s.mcp_s for t, s in zip(totals, splits, strict=True))
    return Row(
        path,
        subject,
        len(totals),
        p50 * 1e3,
        p90 * 1e3,
        responses * 1e3,
        statistics.mean(s.responses_n for s in splits),
        mcp * 1e3,
        statistics.mean(s.mcp_n for s in splits),
        host * 1e3,
    )


async def _timed(n: int, action: Callable[[], Awaitable[object]]) -> list[float]:
    for _ in range(min(5, n)):  # warm-up: first requests pay for connections and lazy imports
        await action()
    totals = []
    for _ in range(n):
        started = time.perf_counter()
        await action()
        totals.append(time.perf_counter() - started)
    return totals


async def _turns(host: Host, transport: ResponsesTransport, stream: bool, request: str, n: int) -> Row:
    splits: list[Split] = []

    async def turn() -> None:
        split = Split()
        splits.append(split)
        conversation = Conversation(
            TimedTransport(transport, split),
            TimedToolbox(host.toolbox, split),
            host.agent.reference(),
            host.display,
            stream=stream,
        )
        result = await conversation.send(request)
        assert result.results and result.results[0][1].output["status"] == "executed", result.results

    totals = await _timed(n, turn)
    path = f"{transport.name}{' stream' if stream else ''}"
    return _row(path, "balance turn" if request == BALANCE else "transfer turn (approved)", totals, splits[-n:])


async def _round_trip(host: Host, transport: ResponsesTransport, n: int) -> Row:
    async def create() -> None:
        await transport.create({"input": PLAIN, "agent_reference": host.agent.reference()})

    return _row(transport.name, "Responses round trip, no tool", await _timed(n, create))


async def _direct(host: Host, n: int) -> list[Row]:
    keys = iter(range(10**9))

    async def balance() -> None:
        result = await host.link.call("get_account_balance", {"account_id": "ACC-001"})
        assert result.output["status"] == "executed"

    async def transfer() -> None:
        arguments = {"from_account": "ACC-001", "to_account": "ACC-002", "amount": "1"}
        result = await host.link.call("transfer_funds", arguments, idempotency_key=f"bench-{next(keys)}")
        assert result.output["status"] == "executed", result.output

    return [
        _row("direct MCP", "get_account_balance", await _timed(n, balance)),
        _row("direct MCP", "transfer_funds (approved)", await _timed(n, transfer)),
    ]


async def run(turns: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bankgate-bench-") as tmp:
        async with running_emulator() as emulator:
            settings = HostSettings.for_emulator(emulator.endpoint, emulator.token, agent_name="bench")
            target = McpTarget(
                db_url=f"sqlite:///{Path(tmp) / 'ledger.db'}",
                server_args=DEMO_LEDGER,
                server_env={KEY_FILE_ENV: str(audit_key(Path(tmp)))},
                server_cwd=tmp,
            )
            display = Display(Console(file=io.StringIO()))
            async with open_host(settings, display, ApproveAll(), target) as host:
                progress("host_bench: direct MCP calls")
                rows = await _direct(host, turns)
                transports: list[ResponsesTransport] = [
                    host.transport,
                    RestTransport(host.access, settings.max_retries),
                ]
                try:
                    for transport in transports:
                        progress(f"host_bench: {transport.name} path, round trips and turns (plain and streamed)")
                        rows.append(await _round_trip(host, transport, turns))
                        for stream in (False, True):
                            for request in (BALANCE, TRANSFER):
                                rows.append(await _turns(host, transport, stream, request, turns))
                finally:
                    await transports[1].aclose()
    return rows


def _print(rows: list[Row]) -> None:
    print(f"{'path':<12}{'subject':<32}{'n':>5}{'p50 ms':>9}{'p90 ms':>9}   where the median turn's time goes")
    for row in rows:
        where = ""
        if row.host_ms is not None:
            where = (
                f"   Responses {row.responses_ms:.1f} ms ({row.responses_per_turn:.0f} trips)"
                f" + MCP {row.mcp_ms:.1f} ms ({row.mcp_per_turn:.0f} call) + host {row.host_ms:.1f} ms"
            )
        print(f"{row.path:<12}{row.subject:<32}{row.n:>5}{row.p50_ms:>9.2f}{row.p90_ms:>9.2f}{where}")
    direct = {row.subject: row.p50_ms for row in rows if row.path == "direct MCP"}
    print()
    for row in rows:
        if row.host_ms is None:
            continue
        tool = "get_account_balance" if row.subject.startswith("balance") else "transfer_funds (approved)"
        added = row.p50_ms - direct[tool]
        print(
            f"{row.path:<12}{row.subject:<26} adds {added:6.1f} ms to a direct {tool} call: "
            f"{row.responses_ms or 0:.1f} ms in Responses round trips, {row.host_ms:.1f} ms in the host itself"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=40, help="measured turns (and calls) per row")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = anyio.run(run, args.turns)
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
