"""A person at a terminal whose Ctrl-C the kernel hands to another thread of the host (Linux may pick any
thread that does not block the signal), and who types a line only some seconds later."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")
PATIENCE_S = 5.0
"""How long the person waits after Ctrl-C before typing a line (which would end any read anyway)."""


def ctrl_c_on_another_thread(
    monkeypatch: pytest.MonkeyPatch, read: Callable[[], T], prompted: Callable[[], bool]
) -> tuple[T | KeyboardInterrupt, bool]:
    """Run `read` on this (main) thread with a terminal as stdin; once `prompted()`, Ctrl-C lands on a worker.

    Returns what `read` returned (or the `KeyboardInterrupt` it raised), and whether the person had typed
    by then: a read that saw Ctrl-C only because a key was pressed.
    """
    leader, follower = os.openpty()
    monkeypatch.setattr("sys.stdin", os.fdopen(follower, "r"))
    typed, done = threading.Event(), threading.Event()

    def person() -> None:
        while not prompted() and not done.is_set():
            time.sleep(0.01)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # delivered to this thread, not the main one
        if not done.wait(PATIENCE_S):
            typed.set()
            os.write(leader, b"y\n")

    worker = threading.Thread(target=person)
    worker.start()
    try:
        try:
            outcome: T | KeyboardInterrupt = read()
        except KeyboardInterrupt as interrupt:
            outcome = interrupt
    finally:
        done.set()
        worker.join()
        os.close(leader)
        sys.stdin.close()
    return outcome, typed.is_set()
