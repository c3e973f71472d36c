"""The work counters count what ran: statements, durable commits, pages, Python calls."""

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

from bench.costs import Meter, Tally, measure, python_calls


def _table(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("CREATE INDEX t_by_v ON t (v)")
    return conn


def test_statements_and_durable_commits_are_counted_by_what_sqlite_ran(tmp_path: Path) -> None:
    tally = Tally()
    with tally.installed():
        conn = _table(tmp_path / "a.db")
    counts: Counter[str] = Counter()
    with Meter(tally).counting(counts):
        for synchronous in ("FULL", "NORMAL", "FULL"):
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES ('x')")
            conn.execute("COMMIT")
    assert counts["statements"] == 12
    assert counts["durable_commits"] == 2  # the NORMAL commit does not wait for the disk
    assert sqlite3.connect is not tally._traced_connect  # put back


def test_pages_are_the_frames_a_transaction_wrote(tmp_path: Path) -> None:
    """One row into a table with one index changes two pages (the table's leaf and the index's)."""
    tally = Tally()
    with tally.installed():
        conn = _table(tmp_path / "a.db")
    meter = Meter(tally)
    one, three = Counter[str](), Counter[str]()
    with meter.counting(one):
        conn.execute("INSERT INTO t (v) VALUES ('x')")
    with meter.counting(three):
        for _ in range(3):
            conn.execute("INSERT INTO t (v) VALUES ('x')")
    assert one["pages_written"] == 2
    assert three["pages_written"] == 6


def test_python_calls_count_each_call_on_this_thread() -> None:
    def leaf() -> None:
        pass

    counts: Counter[str] = Counter()
    with python_calls(counts):
        for _ in range(50):
            leaf()
    assert 50 <= counts["python_calls"] < 60


def test_bankgate_and_its_baselines_are_counted_side_by_side() -> None:
    """A few calls of every subject: each did the work its kind must (a gated transfer commits durably once and
    writes pages; a balance read writes nothing), and bankgate does more than the required work."""
    costs = {(c.path, c.subject): c for c in asyncio.run(measure(3))}
    path = "in-memory 2026-07-28"
    ours, required = costs[path, "gated transfer_funds"], costs[path, "required work: policy, approval, audit"]
    assert ours.durable_commits == required.durable_commits == 1
    assert ours.pages_written > required.pages_written > 0
    assert ours.statements > required.statements and ours.python_calls > required.python_calls
    balance = costs[path, "get_account_balance"]
    assert balance.durable_commits == balance.pages_written == 0 and balance.statements >= 1
    assert costs[path, "+ audit sequencer (chaining those calls' records)"].pages_written > 0
