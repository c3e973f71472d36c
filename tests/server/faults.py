"""Fail the Nth statement a step of the server runs: TigerBeetle's drill, one statement at a time.

Every statement of the ledger's hot path goes through `Statement` (its BEGIN too), the rest through
SQLAlchemy's `execute`, and every write transaction ends in a COMMIT; `Faults` counts them all, from
`armed`, in the threads that serve calls (not the background audit sequencer's, whose drill runs it in
the test's thread), and fails the Nth:

- `LOST`: the connection is lost just before it (PostgreSQL: its server process is terminated, so the
  driver meets the real failure, at once or at the next round trip for a queued write; SQLite, a file
  with no connection to lose: the driver's disk I/O error);
- `CRASH`: the server's code fails in its place (an unexpected exception, as a bug would raise);
- `COMMITTED` (the COMMIT only): the COMMIT reaches the database and the connection is lost before its
  answer does: the outcome committed, the server cannot know it.

A COMMIT is counted as the last statement of its transaction; `seen` lists what was counted (SQL text).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, Engine, RootTransaction, event
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.exc import OperationalError

from mcp_server.storage import database, statement
from mcp_server.storage.database import Database
from mcp_server.storage.statement import Statement
from tests.support import postgres_base_url

COMMIT = "COMMIT"
_UNCOUNTED_THREADS = ("audit-sequencer", "bankgate-loop-connection")


class Fault(Enum):
    LOST = "lost"
    CRASH = "crash"
    COMMITTED = "committed"


class InjectedCrash(RuntimeError):
    """The server's code failing in place of a statement."""


class Faults:
    """Counts the statements of the server's calls from `arm`, and fails the one armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, terminate: Callable[[int], None] | None) -> None:
        """`terminate`: ends a PostgreSQL server process by its pid (None: SQLite only)."""
        self._terminate = terminate
        self._guard = threading.Lock()
        self._counting = False
        self._nth: int | None = None
        self._times = 1
        self._count = 0
        """The statements counted so far that the armed fault can hit."""
        self._fault = Fault.LOST
        self.seen: list[str] = []
        self.spared: tuple[Engine, ...] = ()
        """Engines whose statements are not counted: the test's own view of the database."""
        self.fired: str | None = None
        """The statement the fault took the place of (or followed, `COMMITTED`), once it has."""
        execute, queue = Statement._execute, Statement._queue
        sqlite_commit: Callable[[SQLiteDialect, Any], None] = SQLiteDialect.do_commit

        def counted_execute(sql: Statement, conn: Connection, params: dict[str, Any]) -> Any:
            self._before(conn, sql.sql)
            return execute(sql, conn, params)

        def counted_queue(sql: Statement, conn: Connection, params: dict[str, Any]) -> None:
            self._before(conn, sql.sql)
            queue(sql, conn, params)

        def counted_commit(conn: Connection, transaction: RootTransaction) -> None:
            fault = self._before(conn, COMMIT, committing=True)
            statement.commit(conn, transaction)
            if fault is Fault.COMMITTED:
                raise _lost(conn, psycopg.OperationalError("server closed the connection unexpectedly"))

        def counted_sqlalchemy(conn: Connection, _cursor: Any, sql: str, *_: Any) -> None:
            self._before(conn, sql, wrapped=True)

        def counted_sqlite_commit(dialect: SQLiteDialect, driver: Any) -> None:
            self._before(None, COMMIT, committing=True, wrapped=True)
            sqlite_commit(dialect, driver)

        monkeypatch.setattr(Statement, "_execute", counted_execute)
        monkeypatch.setattr(Statement, "_queue", counted_queue)
        monkeypatch.setattr(database, "commit", counted_commit)  # as `database` imported it
        monkeypatch.setattr(SQLiteDialect, "do_commit", counted_sqlite_commit)
        self._listener = counted_sqlalchemy
        event.listen(Engine, "before_cursor_execute", counted_sqlalchemy)

    def close(self) -> None:
        """Stop counting SQLAlchemy's statements (`Statement` and the COMMITs are put back by `monkeypatch`)."""
        event.remove(Engine, "before_cursor_execute", self._listener)

    @contextmanager
    def armed(self, nth: int | None, fault: Fault = Fault.LOST, times: int = 1) -> Iterator[list[str]]:
        """Count the statements run in the block (yielded, as they run) and fail the `nth` (1-based; None: none)
        of those `fault` can hit (`_hits`), and the `times - 1` after it (a database down, not one lost connection:
        a transaction run again on a fresh connection fails too)."""
        assert fault is not Fault.COMMITTED or self._terminate is not None, "SQLite commits or not: no unknown"
        with self._guard:
            self.seen, self.fired, self._nth, self._fault, self._counting = [], None, nth, fault, True
            self._times = times
            self._count = 0
        try:
            yield self.seen
        finally:
            with self._guard:
                self._counting = False

    def _before(
        self, conn: Connection | None, sql: str, *, committing: bool = False, wrapped: bool = False
    ) -> Fault | None:
        """Count `sql`; fail now if it is the armed one (a COMMITTED fault fails after it, in `counted_commit`).
        `wrapped`: SQLAlchemy runs it, and wraps a driver error itself (`Statement` leaves that to us)."""
        if threading.current_thread().name.startswith(_UNCOUNTED_THREADS) or (conn and conn.engine in self.spared):
            return None
        with self._guard:
            if not self._counting:
                return None
            self.seen.append(sql)
            if not _hits(self._fault, committing):
                return None
            self._count += 1
            if self._nth is None or not self._nth <= self._count < self._nth + self._times:
                return None
            self.fired = sql
            fault = self._fault
        if fault is Fault.CRASH:
            raise InjectedCrash(f"injected in place of {sql!r}")
        if fault is Fault.COMMITTED:
            return fault
        if self._terminate is None or conn is None:  # SQLite: a file, no connection to lose, but its disk can fail
            error = sqlite3.OperationalError("disk I/O error")
            raise error if wrapped else _lost(conn, error)
        self._terminate(conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]
        return fault


def _hits(fault: Fault, committing: bool) -> bool:
    """Whether `fault` can hit a COMMIT (`committing`) or another statement: `COMMITTED` only a COMMIT, `CRASH`
    only another (the server's code runs statements; a COMMIT that fails is the driver's failure, `LOST`)."""
    return fault is Fault.LOST or committing == (fault is Fault.COMMITTED)


def _lost(conn: Connection | None, error: Exception) -> OperationalError:
    """The driver's failure as `Statement` reports one that lost the connection (see `statement._translated`)."""
    lost = conn is not None and conn.dialect.name == "postgresql"
    if lost:
        assert conn is not None
        conn.invalidate(error)
    return OperationalError(COMMIT, (), error, connection_invalidated=lost)


def faults_on(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    """`Faults` for the server on `db`'s database, until the generator is closed (a fixture's body)."""
    faults = Faults(monkeypatch, terminate if db.dialect == "postgresql" else None)
    try:
        yield faults
    finally:
        faults.close()


def terminate(pid: int) -> None:
    """End PostgreSQL server process `pid` (of the test database) and wait until it is gone."""
    with psycopg.connect(postgres_base_url() or "", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
