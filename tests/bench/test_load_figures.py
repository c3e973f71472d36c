"""The load benchmark's own figures measure what they say."""

import os
import threading
import time

from bench.load import context_switches


def test_context_switches_sum_every_thread_of_the_process() -> None:
    started, slept, finish = threading.Event(), threading.Event(), threading.Event()

    def sleeper() -> None:
        started.wait()
        for _ in range(50):
            time.sleep(0.001)  # each sleep gives the CPU up: one voluntary switch
        slept.set()
        finish.wait()

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        before = context_switches(os.getpid())
        started.set()
        assert slept.wait(10)  # the main thread blocks once meanwhile: the 50 are the sleeper's
        assert context_switches(os.getpid()) - before >= 50
    finally:
        finish.set()
        thread.join()
