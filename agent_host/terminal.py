"""Reading from the person at the terminal while the event loop waits.

Reads block the event loop's thread on purpose: the host is idle while a person types, and a
read in a worker thread could not be stopped. The asyncio runner turns Ctrl-C into a task
cancellation that a blocked `input()` never sees, so during a read the default handler is put
back and Ctrl-C raises `KeyboardInterrupt` right there.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, Ctrl-C raises `KeyboardInterrupt` even inside a blocking read."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
