"""Run bankgate's server with its gate's database work on the event loop, for `bench.load --store-on-loop`.

    python -m bench.placement -m MODULE [ARGS...]

On PostgreSQL the shipped server runs each gate transaction in a worker thread
(`SqlGateStore.run`), so the event loop never waits on the network. That costs thread hops
and, worse, GIL hand-offs: every statement a worker sends releases the GIL and takes it
back from the busy loop. This experiment runs the same transactions inline on the loop, as
the server already does on SQLite, to measure what the threads cost. It is not a design to
ship: a database server that stops answering would stop the whole process, and every
call's statements would wait behind every other's.
"""

import runpy
import sys
from collections.abc import Callable
from typing import TypeVar

from mcp_server.storage.gate_store import SqlGateStore

T = TypeVar("T")


async def run_on_loop(_store: SqlGateStore, work: Callable[[], T]) -> T:
    """`SqlGateStore.run` without the worker thread: the work blocks the event loop while it runs."""
    return work()


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] != "-m":
        sys.exit(__doc__)
    module, args = sys.argv[2], sys.argv[3:]
    SqlGateStore.run = run_on_loop  # type: ignore[method-assign]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
