"""What one call costs in work, counted rather than timed, beside the floor and the required work.

    python -m bench.costs [--calls N] [--json]

On the shared 2-core machine these benchmarks run on, a rate moves 20–50 % between runs of the
same code, and even CPU time per call varies by a third, so a change worth a few percent cannot
be seen in `gate_bench` or `load`. Work can: these counters are the same on every run (to a page
split or two), so they show what a change removed and where bankgate's time goes next to a
gate that does only what it must. For each subject, per call, in memory, one client:

- Python calls: every Python and built-in function called on the event loop's thread (`sys.setprofile`).
  Client and server share that thread in memory; the client's part is the same for every subject.
- statements: every SQL statement SQLite ran, BEGIN and COMMIT included (each connection's trace callback).
- durable commits: COMMITs under `synchronous = FULL`, each one waits for the disk (an fsync of the WAL).
- pages written: WAL frames, one per database page a transaction changed (automatic checkpoints are
  off while counting, so each WAL only grows).

Subjects are those of `gate_bench` and `server_bench` in memory: bankgate's gated transfer and
balance read, the floors (`bench.bare_server`), the required work (`bench.required_work`) and the
bare tools for scale. bankgate's audit sequencer is held while its calls are counted, then chains
their records in one go, counted apart (`+ audit sequencer`, per call): in the server it runs on
its own thread every 100 ms, a batch of a few dozen records, so its per-batch part is a little
larger there.
"""

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from mcp import Client

from bench.bare_server import bare_server
from bench.gate_bench import TRANSFER, approve
from bench.progress import progress
from bench.servers import bench_settings
from bench.timing import FLOOR, REQUIRED
from mcp_server.app import build_server, open_state

COUNTERS = ("python_calls", "statements", "durable_commits", "pages_written")
_WAL_FRAME_HEADER = 24
_DURABLE = {"2", "3", "FULL", "EXTRA"}
"""`PRAGMA synchronous` values under which a COMMIT waits for the disk (in WAL mode)."""


class Tally:
    """Counts SQLite's statements, durable commits and WAL frames on every connection opened while installed."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._files: dict[str, int] = {}
        """Each database file seen, with its page size."""
        self._connect = sqlite3.connect

    @contextmanager
    def installed(self) -> Iterator["Tally"]:
        """Every `sqlite3.connect` (SQLAlchemy's included) traced, with automatic checkpoints off."""
        sqlite3.connect = sqlite3.dbapi2.connect = self._traced_connect  # type: ignore[assignment]
        try:
            yield self
        finally:
            sqlite3.connect = sqlite3.dbapi2.connect = self._connect

    def _traced_connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = self._connect(*args, **kwargs)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        if path:
            self._files[path] = conn.execute("PRAGMA page_size").fetchone()[0]
        durable = [True]  # SQLite's default, `synchronous = FULL`

        def traced(sql: str) -> None:
            words = sql.split()
            self.counts["statements"] += 1
            if words[:2] == ["PRAGMA", "synchronous"] and len(words) >= 4:
                durable[0] = words[3].upper() in _DURABLE
            elif words[:1] == ["COMMIT"] and durable[0]:
                self.counts["durable_commits"] += 1

        conn.set_trace_callback(traced)
        return conn

    def frames(self) -> int:
        """WAL frames in every database's WAL so far."""
        total = 0
        for path, page_size in self._files.items():
            wal = Path(path + "-wal")
            if wal.exists() and wal.stat().st_size > 32:
                total += (wal.stat().st_size - 32) // (page_size + _WAL_FRAME_HEADER)
        return total


@contextmanager
def python_calls(counts: Counter[str]) -> Iterator[None]:
    """Count every Python and built-in function call on this thread while inside."""

    def profiler(_frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" or event == "c_call":
            counts["python_calls"] += 1

    sys.setprofile(profiler)
    try:
        yield
    finally:
        sys.setprofile(None)


@dataclass(frozen=True)
class Cost:
    path: str
    subject: str
    calls: int
    python_calls: float
    statements: float
    durable_commits: float
    pages_written: float


class Meter:
    """Counts the work of blocks of calls, each per call."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    @contextmanager
    def counting(self, into: Counter[str]) -> Iterator[None]:
        before, frames = Counter(self.tally.counts), self.tally.frames()
        with python_calls(into):
            yield
        into.update(self.tally.counts - before)
        into["pages_written"] += self.tally.frames() - frames

    async def calls(self, path: str, subject: str, call: Callable[[], Awaitable[object]], calls: int) -> Cost:
        for _ in range(warm_up(calls)):  # caches filled, first-use imports done
            await call()
        counts: Counter[str] = Counter()
        with self.counting(counts):
            for _ in range(calls):
                await call()
        return per_call(path, subject, counts, calls)


def warm_up(calls: int) -> int:
    """Uncounted calls before the counted ones; the sequencer chains their records too."""
    return min(20, calls)


def per_call(path: str, subject: str, counts: Counter[str], calls: int) -> Cost:
    return Cost(path, subject, calls, *(round(counts[name] / calls, 1) for name in COUNTERS))


def caller(client: Client, tool: str, arguments: dict[str, str]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result
        return result

    return call


TRANSFERS = (
    ("gated transfer_funds", "ours", "transfer_funds"),
    (f"{REQUIRED}policy, approval, audit", "theirs", "approve_recorded"),
    (f"{FLOOR}question + outcome commits", "theirs", "approve_durably"),
    ("bare approval no-op", "theirs", "approve_noop"),
)
BALANCES = (
    ("get_account_balance", "ours", "get_account_balance"),
    (f"{REQUIRED}entitlements and policy", "theirs", "read_entitled"),
    (f"{FLOOR}one read, balance schema", "theirs", "read_shaped"),
)
"""(subject, server, tool): bankgate's (`ours`) and the bare server's (`theirs`), as in gate_bench and server_bench."""
BALANCE = {"account_id": "ACC-001"}
SEQUENCER = "+ audit sequencer (chaining those calls' records)"


async def measure(calls: int) -> list[Cost]:
    tally = Tally()
    meter = Meter(tally)
    with tally.installed():
        settings = bench_settings(Path(tempfile.mkdtemp()))
        state = open_state(settings, create=True, seed=True)
        state.ledger.deposit("ACC-001", "1000000")
        state.sequencer.interval = state.sequencer.idle_interval = 10**9  # held: chained below, counted apart
        server, bare = build_server(state, settings), bare_server()
        logging.disable(logging.INFO)
        costs = []
        for path, mode in (("in-memory 2026-07-28", "auto"), ("in-memory 2025-11-25", "legacy")):
            progress(f"bench.costs: {path}")
            async with (
                Client(server, elicitation_callback=approve, mode=mode) as ours,
                Client(bare, elicitation_callback=approve, mode=mode) as theirs,
            ):
                clients = {"ours": ours, "theirs": theirs}
                for subject, client, tool in TRANSFERS:
                    costs.append(await meter.calls(path, subject, caller(clients[client], tool, TRANSFER), calls))
                    if client == "ours":
                        chained: Counter[str] = Counter()
                        with meter.counting(chained):
                            state.sequencer.sequencer.chain()
                        costs.append(per_call(path, SEQUENCER, chained, calls + warm_up(calls)))
                for subject, client, tool in BALANCES:
                    costs.append(await meter.calls(path, subject, caller(clients[client], tool, BALANCE), calls))
        return costs


def report(costs: list[Cost], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"benchmark": "costs", "counters": list(COUNTERS), "costs": [asdict(c) for c in costs]}))
        return
    print("\ncosts: work per call, counted (not timed), in memory, one client")
    print(f"{'path':<22}{'subject':<52}{'Python calls':>13}{'statements':>11}{'durable':>9}{'pages':>7}")
    for c in costs:
        print(
            f"{c.path:<22}{c.subject:<52}{c.python_calls:>13,.0f}{c.statements:>11.1f}"
            f"{c.durable_commits:>9.1f}{c.pages_written:>7.1f}"
        )
    print("(durable: COMMITs that wait for the disk; pages: WAL frames written)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="counted calls per subject and path")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report(asyncio.run(measure(args.calls)), args.json)


if __name__ == "__main__":
    main()
