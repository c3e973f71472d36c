"""One line per phase on stderr, so a benchmark that runs for minutes says where it is.

stdout stays the benchmark's table or JSON (``bench.results`` parses it); stderr is the person's.
"""

import sys
import time

_STARTED = time.monotonic()


def progress(message: str) -> None:
    """``[  12 s] message`` on stderr, the time counted from the start of the process."""
    print(f"[{time.monotonic() - _STARTED:4.0f} s] {message}", file=sys.stderr, flush=True)
