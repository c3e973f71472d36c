"""The placement experiment moves the gate's database work where it says, and the load benchmark counts
what moving it saves (context switches of every server thread)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench import placement
from bench.load import context_switches
from mcp_server.storage.database import Database
from mcp_server.storage.gate_store import NETWORK_DEADLINE, SqlGateStore

pytestmark = pytest.mark.anyio


def server_store(tmp_path: Path) -> SqlGateStore:
    """A store that places its work as it would on a database server (a worker thread under a deadline)."""
    store = SqlGateStore(Database.open(f"sqlite:///{tmp_path / 'ledger.db'}"))
    store.embedded, store.deadline = False, NETWORK_DEADLINE
    return store


async def test_the_shipped_store_runs_server_work_off_the_loop(tmp_path: Path) -> None:
    store = server_store(tmp_path)
    assert await store.run(threading.get_ident) != threading.get_ident()


async def test_the_experiment_runs_it_on_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = server_store(tmp_path)
    monkeypatch.setattr(SqlGateStore, "run", placement.run_on_loop)
    assert await store.run(threading.get_ident) == threading.get_ident()


def test_the_wrapper_patches_the_store_before_the_module_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []
    monkeypatch.setattr(SqlGateStore, "run", SqlGateStore.run)  # restored afterwards
    monkeypatch.setattr(sys, "argv", ["bench.placement", "-m", "mcp_server", "serve", "--db", "x"])
    monkeypatch.setattr(placement.runpy, "run_module", lambda module, **_: ran.append((module, SqlGateStore.run)))
    placement.main()
    assert ran == [("mcp_server", placement.run_on_loop)]
    assert sys.argv == ["mcp_server", "serve", "--db", "x"]


def test_the_experiment_is_refused_on_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--store-on-loop"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--store-on-loop is a PostgreSQL experiment" in done.stderr


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
