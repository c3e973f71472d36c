"""An upgrade stopped inside a migration (the process killed, its connection lost, a deadlock with a reader)
leaves the ledger as it was before that migration: the next open, or a replica starting beside it, applies it
once, with no refusal an operator must clear."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, inspect, text

from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.storage import migrations
from mcp_server.storage.database import Database
from tests.ledger import migration_worker
from tests.server.faults import terminate
from tests.support import postgres_base_url

ROOT = Path(__file__).resolve().parents[2]
"""The repository root, where the worker runs as `-m tests.ledger.migration_worker`."""


@pytest.fixture
def before_0017(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ledger migrated up to 0016, as the release before 0017 left it."""
    shipped = migrations.available()
    with monkeypatch.context() as older:
        older.setattr(migrations, "available", lambda: [m for m in shipped if m.version < 17])
        Database.open(database_url).close()
    return database_url


def assert_upgraded_once(url: str) -> None:
    """Every shipped migration recorded once, and 0017's indexes as it leaves them."""
    db = Database.open(url, create=False)
    try:
        versions = db.read(lambda conn: [v for (v,) in conn.execute(text("SELECT version FROM schema_migrations"))])
        assert sorted(versions) == [m.version for m in migrations.available()]
        approvals, audit = db.read(
            lambda conn: [{index["name"] for index in inspect(conn).get_indexes(t)} for t in ("approvals", "audit_log")]
        )
        assert "approvals_pending_by_deadline" not in approvals
        assert "audit_by_principal" not in audit and "audit_moved_by_principal" in audit
    finally:
        db.close()


@pytest.fixture
def stopped_inside_0017(before_0017: str) -> Iterator[subprocess.Popen[str]]:
    """A process migrating the ledger, stopped inside 0017 (its first DROP INDEX ran, the transaction open)."""
    worker = subprocess.Popen(
        [sys.executable, "-m", migration_worker.__name__, before_0017], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "inside", "the worker stopped before reaching 0017"
        yield worker
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)


class Opening(threading.Thread):
    """A replica opening (and migrating) the ledger at `url` in a thread of its own, started at once: what it
    opened, or what it raised."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.opened: list[Database] = []
        self.failed: list[BaseException] = []
        self.start()

    def run(self) -> None:
        try:
            self.opened.append(Database.open(self.url, create=False))
        except BaseException as exc:  # reported by the test
            self.failed.append(exc)


def test_a_server_killed_inside_a_migration_leaves_it_to_the_next_open(
    before_0017: str, stopped_inside_0017: subprocess.Popen[str]
) -> None:
    os.kill(stopped_inside_0017.pid, signal.SIGKILL)
    assert stopped_inside_0017.wait(10) == -signal.SIGKILL
    assert_upgraded_once(before_0017)


def test_a_replica_starting_beside_one_killed_inside_a_migration_applies_it_once(
    before_0017: str, stopped_inside_0017: subprocess.Popen[str]
) -> None:
    """The second replica waits for the first's migration (its lock), and applies it itself once the first
    is killed: the first's half is rolled back, nothing is refused."""
    beside = Opening(before_0017)
    beside.join(1.0)
    assert beside.is_alive(), "the second replica did not wait for the first's migration"
    os.kill(stopped_inside_0017.pid, signal.SIGKILL)
    beside.join(30)
    assert not beside.is_alive() and beside.failed == []
    beside.opened[0].close()
    assert_upgraded_once(before_0017)


def test_a_connection_lost_inside_a_migration_is_unavailable_and_the_next_open_applies_it(
    backend: str, before_0017: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("a SQLite file has no connection to lose")
    run = Connection.exec_driver_sql

    def losing(conn: Connection, statement: str, *args: object, **kwargs: object) -> object:
        result = run(conn, statement, *args, **kwargs)  # type: ignore[arg-type]
        if statement == migration_worker.FIRST:
            terminate(conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]
        return result

    with monkeypatch.context() as lost:
        lost.setattr(Connection, "exec_driver_sql", losing)
        with pytest.raises(LedgerError) as refused:
            Database.open(before_0017, create=False)
    assert refused.value.code == ErrorCode.DATABASE_UNAVAILABLE
    assert_upgraded_once(before_0017)


def test_a_migration_that_deadlocks_with_a_reader_is_run_again_not_refused(backend: str, before_0017: str) -> None:
    """`audit verify` reads the audit log, then the approvals, in one snapshot; 0017 locks the approvals, then the
    audit log. Met during an upgrade, PostgreSQL ends one of them (deadlock_timeout): the migration, waiting
    longest. It is contention, as any other transaction's, so it is run again; it was refused as a schema that
    does not match its records ("restore the database from a backup"), stopping the server."""
    if backend != "postgresql":
        pytest.skip("SQLite takes the whole file's write lock up front: no deadlock")
    with psycopg.connect(before_0017) as reader, psycopg.connect(postgres_base_url() or "") as watcher:
        reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT count(*) FROM audit_log")
        upgrading = Opening(before_0017)
        waiting = "SELECT 1 FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))"
        deadline = time.monotonic() + 10
        while not watcher.execute(waiting, (reader.info.backend_pid,)).fetchone():
            assert time.monotonic() < deadline and upgrading.is_alive(), "the migration never waited for the reader"
            watcher.rollback()
            time.sleep(0.01)
        reader.execute("SELECT count(*) FROM approvals")  # the deadlock: PostgreSQL ends the migration's transaction
        reader.commit()
        upgrading.join(30)
    assert upgrading.failed == [] and not upgrading.is_alive(), upgrading.failed
    upgrading.opened[0].close()
    assert_upgraded_once(before_0017)
