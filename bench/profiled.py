"""Run a Python module under cProfile on every thread, timing CPU (not wall) time, for `bench.load --profile`.

    python -m bench.profiled OUT.pstats -m MODULE [ARGS...]

The server does its work on the event loop, in worker threads (database calls) and on the
audit sequencer's thread; a plain `cProfile` sees only the first. Here every thread gets its
own profiler timed by `time.thread_time`, so time spent waiting (on the network, the GIL, a
lock) is left out, and their statistics are merged into one file when the module ends (on
SIGTERM too: uvicorn shuts down, then raises the signal again, which ends the module here).
Profiling slows the process several times: read it for where CPU goes and how many calls
each function gets, not for how fast the server is.
"""

import cProfile
import pstats
import runpy
import signal
import sys
import threading
import time
from typing import Any

_profiles: list[cProfile.Profile] = []
_guard = threading.Lock()


def _profiled(original: Any) -> Any:
    """`Thread._bootstrap_inner` profiled (every thread runs it, whatever its class does with `run`)."""

    def bootstrap(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with _guard:
            _profiles.append(profile)
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    return bootstrap


def _stop(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        sys.exit(__doc__)
    out, module, args = sys.argv[1], sys.argv[3], sys.argv[4:]
    threading.Thread._bootstrap_inner = _profiled(threading.Thread._bootstrap_inner)  # type: ignore[attr-defined]
    sys.argv = [module, *args]
    signal.signal(signal.SIGTERM, _stop)
    main_thread = cProfile.Profile(time.thread_time)
    main_thread.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_thread.disable()
        stats = pstats.Stats(main_thread)
        with _guard:
            for profile in _profiles:
                profile.create_stats()  # a worker still parked in its queue: what it did so far
                stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
