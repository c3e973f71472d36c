"""One transactional code path over SQLite and PostgreSQL, with retries users never see.

Concurrency model (why the ledger stays correct with many writers):

* SQLite: WAL journal, ``synchronous=FULL`` (a commit that returned survives power loss),
  foreign keys on, and every write transaction opened with ``BEGIN IMMEDIATE`` so writers
  take the single write lock up front and queue on ``busy_timeout`` instead of failing on a
  read-to-write lock upgrade (a lock still held after the timeout is retried like any other
  contention). Writers in one process also queue on a Python lock first, so they hand the
  file lock over promptly rather than polling for it. A read runs its statements without BEGIN,
  as on PostgreSQL: each sees its own WAL snapshot, which writers never block (a BEGIN DEFERRED
  and a ROLLBACK around a one-statement read tripled its statements); one that needs a single
  snapshot across statements asks for it (``read(snapshot=True)``: BEGIN DEFERRED). One
  long-lived reader connection serves whichever read finds it free, skipping the pool's checkout
  and reset, which cost more than a small indexed read. A read that must not wait (the event
  loop's) runs on the prompt writer instead when the write gate is free: a connection's page cache
  is dropped whenever another connection has written since its last read, so the reader read
  every page again after each of the loop's writes (~15 µs for an approval by its digest), while
  the prompt writer's cache holds what it wrote.
* PostgreSQL: READ COMMITTED, and the ledger locks the rows it will change with ``SELECT … FOR
  UPDATE`` in ascending id order (``Database.for_update``), so two transfers touching the same
  accounts serialize and cannot deadlock. Serialization failures, deadlocks and lock timeouts
  (SQLSTATE 40001/40P01/55P03) are retried anyway, so such an error never reaches a user; so is a
  prepared statement the server lacks (``prepared.GONE``). A unique violation (23505) is not
  transient: retrying the same work meets the same row, so it is an error, never retried (writers
  that may race on a key take its turn first, see ``turns``). A read runs its statements without
  BEGIN and COMMIT (autocommit): under READ COMMITTED each statement sees what was committed when it
  began either way, so the two round trips bought nothing; a read that needs one snapshot across its
  statements asks for it (``read(snapshot=True)``: REPEATABLE READ).

Two options serve callers on an event loop (``Database.run``):

* ``wait=False``: run now or raise ``WouldWait``, never waiting long for a lock another
  writer holds, so the caller can run the work in a worker thread instead. On SQLite the
  in-process write lock is waited on for 5 ms at most (its holders are this process's own
  short transactions, the audit sequencer's or one already in a worker thread: falling back
  at once made every such overlap a thread hop, and the hops more overlaps), and the write
  runs on one long-lived connection whose ``busy_timeout`` is 0 (another process's lock is
  not waited on): what is left to wait on is the disk, which costs less than the thread hop
  that waiting would need. On PostgreSQL the work (a read too: ``read(wait=False)``)
  runs on the loop's own connection (``loop_connection``: a short lock timeout, every wait on
  the server bounded, opened in the background), or raises ``WouldWait`` while it is not ready.
* ``durable=False``: the commit need not reach the disk before ``run`` returns (SQLite
  ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``). It survives the process
  being killed, not the machine losing power; any later durable commit flushes it too. Only
  for writes whose loss is safe, never for an outcome someone is told about.

A connection PostgreSQL closed while it sat idle (a restart, ``pg_terminate_backend``, an idle timeout, a
failover) fails the first round trip of the next transaction to draw it. A ping at every checkout would cost
every transaction a round trip; instead such a transaction is run once more, on a fresh connection (``_Unit``):
only when its connection served before the transaction began and failed on the first round trip, before the
COMMIT was sent (so nothing of it ran: the server had answered nothing), and not for a wait that timed out (a
silent server). Pooled connections opened before the failure are replaced as they are next checked out
(SQLAlchemy's rule for a lost connection); work on the loop's connection goes to a worker thread
(``WouldWait``). A connection lost once the COMMIT was sent is never run again (``CommitUnknown``), nor a
transaction whose fresh connection fails too.

Retries re-run the whole ``work`` callable on a fresh transaction, so ``work`` must not
have side effects outside the transaction (no network calls, no appends to outer lists
that survive a rollback). Do not nest ``run`` calls: pass the ``Connection`` down instead.
"""

from __future__ import annotations

import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import platformdirs
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from mcp_server.ledger.errors import ErrorCode, LedgerError
from mcp_server.storage import migrations, prepared
from mcp_server.storage.loop_connection import LoopConnection, Unanswered
from mcp_server.storage.statement import (
    RoundTrips,
    Statement,
    commit,
    counted,
    driver_mode,
    pipelined,
    reading_ahead,
    send_queued_before,
)

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]

_log = logging.getLogger(__name__)

_MAX_ATTEMPTS = 12
_RETRY_DEADLINE_S = 15.0
_BACKOFF_FIRST_S = 0.002
_BACKOFF_CAP_S = 0.25
_SQLITE_BUSY_TIMEOUT_MS = 5_000
_SQLITE_ERROR, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 1, 5, 6, 11, 26
_SQLITE_DENIED = frozenset({3, 8, 23})
"""SQLITE_PERM, SQLITE_READONLY (a file or folder this user may only read, `query_only`) and SQLITE_AUTH."""
_PROMPT_TURN_WAIT_S = 0.005
"""SQLite: how long work that must not wait waits for the in-process write lock (see the module docstring)."""
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"}) | prepared.GONE
_DENIED_SQLSTATES = frozenset({"42501", "25006"})
"""insufficient_privilege (a role that may only read) and read_only_sql_transaction (a standby, a read-only default)."""
# SQLite's driver runs in autocommit mode, so each transaction states its own BEGIN; on PostgreSQL
# `statement.pipelined` queues it (a libpq without pipeline mode: the driver begins by itself).
_SQLITE_BEGIN = {True: Statement("BEGIN IMMEDIATE"), False: Statement("BEGIN DEFERRED")}
_SQLITE_END_READ = Statement("ROLLBACK")
_SQLITE_COMMIT = Statement("COMMIT")
_SQLITE_NO_WAITING = Statement("PRAGMA busy_timeout = 0")
_SQLITE_RELAXED, _SQLITE_DURABLE = Statement("PRAGMA synchronous = NORMAL"), Statement("PRAGMA synchronous = FULL")
_POSTGRES_RELAXED = Statement("SET LOCAL synchronous_commit = off")
_LEDGER_SCHEMA = text(
    "SELECT current_schema(), (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.oid = to_regclass('schema_migrations'))"
)

_UNAVAILABLE = "The ledger database is unavailable right now; please try again shortly."
_BUSY = "The ledger is too busy to complete this right now; please try again shortly."
_UNKNOWN = (
    "The ledger database stopped answering while this was being committed, so whether it took effect is not "
    "known yet; check before repeating it. Retrying with the same idempotency key is safe: it answers with what "
    "happened."
)
"""A connection lost once the COMMIT was sent: the database may have committed, so "try again" would invite a
second movement from a caller without a key."""


def default_database_url() -> str:
    """``sqlite:///<user data dir>/bankgate/ledger.db`` (the directory is created on open)."""
    return f"sqlite:///{Path(platformdirs.user_data_dir('bankgate')) / 'ledger.db'}"


class LedgerNotOpened(ValueError):
    """No ledger at a URL (missing, not a bankgate database, malformed URL); the message is one line with a hint."""


class DatabaseUnreachable(LedgerError):
    """The database server or file cannot be reached; the message names where and what to check, never a password."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.DATABASE_UNAVAILABLE, message)


class AccessDenied(DatabaseUnreachable):
    """The database refused the work for want of a permission (a SQLite file or folder this user may only read, a
    PostgreSQL role without the privilege, a read-only transaction): no retry helps and nothing was changed, so the
    message names the driver's reason and what to fix, never "try again shortly"; `needs`, when the work needed
    more than writing rows (a migration)."""

    def __init__(self, reason: str, *, write: bool, needs: str | None = None) -> None:
        self.reason = reason
        needs = needs or (
            "Writing needs a user that may write the ledger (SQLite: its file and folder; PostgreSQL: a role with "
            "write privileges on its tables)"
            if write
            else "Reading needs a user that may read the ledger (SQLite: its file and folder; PostgreSQL: a role with "
            "SELECT on its tables)"  # a read-only command: write privileges would not help
        )
        super().__init__(f"the ledger database refused this: {reason}; nothing was changed. {needs}")


_QUERY_PARAMETER = re.compile(r"([?&])([^=&#]*)=([^&#]*)")
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})
"""Query parameters libpq reads a password from (their names percent-decoded, as libpq decodes them)."""


def redacted_url(url: str) -> str:
    """A database URL without its passwords (in the user info, or libpq's `password`/`sslpassword`
    query parameters), for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest = _QUERY_PARAMETER.sub(_hide_secret_parameter, rest)
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return f"{scheme}://{rest}"
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


def _hide_secret_parameter(match: re.Match[str]) -> str:
    separator, name, _ = match.groups()
    return f"{separator}{name}=***" if unquote_plus(name).strip().lower() in _SECRET_PARAMETERS else match[0]


class CommitUnknown(LedgerError):
    """The connection was lost once the COMMIT was sent: the work may have been committed, or not. Its message
    is a tool caller's (`_UNKNOWN`); another front end (the desk) words its own."""


class WouldWait(Exception):
    """A ``run(wait=False)`` found the write lock taken (PostgreSQL: or the loop's connection not ready, or closed
    while it sat idle): nothing ran; run it where waiting is harmless."""


class Database:
    """A pooled engine plus the transaction discipline every ledger operation runs under."""

    def __init__(self, engine: Engine) -> None:
        """Wrap a configured engine; use :meth:`open`, which also applies migrations."""
        self._engine = engine
        self._dialect = cast(Dialect, engine.dialect.name)
        self._write_gate = threading.Lock() if self._dialect == "sqlite" else None
        gate = self._write_gate
        self._turns: dict[bool, AbstractContextManager[None]] = (
            {True: _Turn(gate, wait=True), False: _Turn(gate, wait=False)} if gate else {True: _AS_IS, False: _AS_IS}
        )
        """A write's turn (`_turn`) by whether it may wait for it."""
        self._reader: Connection | None = None
        self._reader_free = threading.Lock()
        self._prompt_writer: Connection | None = None
        """SQLite: the connection of writes that must not wait (``busy_timeout`` 0), used under the write gate."""
        self._loop = LoopConnection(engine, _POSTGRES_CONNECT_ARGS) if self._dialect == "postgresql" else None
        """PostgreSQL: the event loop's connection, for work that must not wait (``wait=False``)."""
        for each in self.engines if self._loop is not None else ():
            event.listen(each, "before_cursor_execute", send_queued_before)  # queued writes go before any later SQL
            event.listen(each, "connect", _stamp_opened)
            event.listen(each, "connect", prepared.unique_names)
            event.listen(each, "handle_error", prepared.forget_after)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        pool_size: int = 16,
        create: bool = True,
        migrate: bool = True,
        before_migrating: Callable[[Database], None] | None = None,
    ) -> Database:
        """Connect to ``url`` (``sqlite:///path``, a plain path, or ``postgresql://…``) and migrate.

        ``create=False`` opens only an existing bankgate ledger (one with ``schema_migrations``),
        so a mistyped URL is an error instead of a new, empty ledger; it still applies pending
        migrations to an existing one. ``migrate=False`` (with ``create=False``) writes nothing: a
        ledger not at this build's schema is refused. ``before_migrating`` checks the database found, on whatever
        release's schema it holds, before anything is written to it (a start it refuses leaves it as it was). Raises
        ``LedgerNotOpened`` or ``DatabaseUnreachable``, each with a one-line hint.
        """
        assert migrate or not create, "a ledger is only created by migrating"
        database = cls(_create_engine(url, pool_size, create=create))
        try:
            database._check_reachable(url, create)
            if before_migrating is not None:
                before_migrating(database)
            if migrate:
                migrations.apply_pending(database)
            else:
                migrations.check_current(database)
        except BaseException:
            database.close()
            raise
        return database

    def _check_reachable(self, url: str, create: bool) -> None:
        """Connect once, turning a driver's chained traceback into one line that names the server.

        The tables (and views: a schema of views is someone's too) are listed before `schema_migrations` is looked
        for: a server starting beside this one commits the ledger's first tables and `schema_migrations` together,
        so tables listed are found as a ledger's by the look after (the other order took them, committed in between,
        for another application's). SQLite is looked at through a connection that leaves the file as it is
        (`_looking`)."""
        look = _looking(self._engine)
        try:
            with look.connect() as conn:
                inspector = inspect(conn)
                found = {"table": len(inspector.get_table_names()), "view": len(inspector.get_view_names())}
                exists = migrations.kept_here(inspector)
                if exists and self._dialect == "postgresql":
                    _check_ledger_schema(conn, url)
                others = "" if exists else " and ".join(_counted(n, kind) for kind, n in found.items() if n)
        except OperationalError as exc:
            raise DatabaseUnreachable(_unreachable(self._engine.url, exc)) from exc
        except DatabaseError as exc:
            unusable = _unusable_file(self._engine.url, exc)
            if unusable is None:
                raise
            raise LedgerNotOpened(unusable) from exc
        finally:
            if look is not self._engine:
                look.dispose()
        if not create and not exists:
            raise LedgerNotOpened(
                f"{redacted_url(url)} holds no bankgate ledger; create one with "
                "`bankgate-mcp admin init --db URL` (add --seed-demo for demo accounts)"
            )
        if others:  # another application's database (a typo, the wrong file): a ledger is made only where none is
            raise LedgerNotOpened(
                f"{redacted_url(url)} holds {others} of something else and no bankgate ledger; create the ledger in "
                "an empty database (or a schema of its own)"
            )

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine statements go through: the pool's and, on PostgreSQL, the loop connection's
        (for instruments that listen to their events, such as `bench.shapes`)."""
        return (self._engine,) if self._loop is None else (self._engine, self._loop.engine)

    @property
    def for_update(self) -> str:
        """Row-lock suffix for a SELECT of rows about to change (SQLite locks the whole file)."""
        return " FOR UPDATE" if self._dialect == "postgresql" else ""

    @property
    def for_share(self) -> str:
        """Row-lock suffix for a SELECT of rows that must not change or go until the transaction ends (SQLite
        locks the whole file)."""
        return " FOR SHARE" if self._dialect == "postgresql" else ""

    def run(self, work: Callable[[Connection], T], *, wait: bool = True, durable: bool = True) -> T:
        """Run ``work`` in one write transaction, committed on return, retried on contention.

        ``wait=False`` raises ``WouldWait`` instead of waiting for another writer (or, on
        PostgreSQL, while the loop's connection is not ready, or found closed); ``durable=False`` lets the
        commit return before it reaches the disk (see the module docstring).
        """
        return self._transact(work, write=True, wait=wait, durable=durable)

    def read(self, work: Callable[[Connection], T], *, snapshot: bool = False, wait: bool = True) -> T:
        """Run read-only ``work``; it must not write. Each statement sees what was committed when it
        began, or, with ``snapshot``, all of them one snapshot (both backends).
        ``wait=False`` on PostgreSQL: on the loop's connection, or ``WouldWait``; on SQLite, where reads never
        wait: on the prompt writer, if the write gate is free (its page cache is warm, see the module docstring)."""
        if self._dialect == "postgresql" and not wait:
            return self._transact(work, write=False, wait=False, snapshot=snapshot)
        gate = self._write_gate
        if gate is not None and not wait and gate.acquire(blocking=False):
            try:
                writer = self._prompt_writer
                if writer is not None and not writer.invalidated:
                    return _sqlite_read(writer, work, snapshot)
            except DBAPIError:
                self._prompt_writer = _discarded(self._prompt_writer)  # and read again below
            finally:
                gate.release()
        if self._dialect == "sqlite" and self._reader_free.acquire(blocking=False):
            try:
                return self._read_on_reader(work, snapshot)
            except DBAPIError:
                self._reader = _discarded(self._reader)  # and read again below, with the usual retries and reporting
            finally:
                self._reader_free.release()
        return self._transact(work, write=False, snapshot=snapshot)

    def ping(self) -> None:
        """Readiness probe: raise ``database_unavailable`` unless a trivial query succeeds."""
        self.read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    def close(self) -> None:
        """Close pooled connections; connections checked out elsewhere close on return."""
        with self._reader_free:
            self._reader = _discarded(self._reader)
        if self._write_gate is not None:
            with self._write_gate:
                self._prompt_writer = _discarded(self._prompt_writer)
        if self._loop is not None:
            self._loop.close()
        self._engine.dispose()

    def _read_on_reader(self, work: Callable[[Connection], T], snapshot: bool) -> T:
        """One SQLite read on the long-lived reader connection; the caller holds `_reader_free`."""
        if self._reader is None:
            self._reader = self._engine.connect()
        return _sqlite_read(self._reader, work, snapshot)

    def _transact(
        self,
        work: Callable[[Connection], T],
        *,
        write: bool,
        wait: bool = True,
        durable: bool = True,
        snapshot: bool = False,
    ) -> T:
        deadline = time.monotonic() + _RETRY_DEADLINE_S
        rerun = False  # run again already, its connection found closed: at most once
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            committing = False
            unit: _Unit | None = None
            began = time.monotonic() if self._dialect == "postgresql" else 0.0  # for `_Unit.reused`
            try:
                with self._turn(write, wait), self._connection(wait) as conn:
                    if self._dialect == "postgresql":
                        unit = _Unit(conn, began)
                        if not write:
                            return _postgres_read(conn, work, snapshot, kept=not wait)
                        with pipelined(conn), conn.begin() as transaction:
                            if not durable:
                                _POSTGRES_RELAXED.send(conn)
                            result = work(conn)
                            committing = True
                            commit(conn, transaction)
                            return result
                    with _relaxed(conn, not durable), _SqliteTransaction(conn, write=write, snapshot=snapshot):
                        return work(conn)
            except DBAPIError as exc:
                if not _is_transient(exc):
                    stale = not (committing or rerun) and unit is not None and unit.found_closed(exc)
                    if unit is not None and _closed_by_server(exc):
                        self._lost(unit.handle, exc)
                    if not wait:
                        self._prompt_failed(exc, stale)
                        if not committing and _unanswered(exc):
                            raise WouldWait from exc  # nothing took effect: a worker thread may wait it out
                    if stale:
                        _log.info("a ledger connection was closed while idle; running the transaction again")
                        if not wait:
                            raise WouldWait from exc  # in a worker thread, on a fresh pooled connection
                        rerun = True
                        continue
                    if _denied(exc) and not committing:
                        # INFO: a command line has no log handler, and logging's last resort would print a warning
                        # (and its traceback) beside the one line the command prints from the error itself.
                        _log.info("the ledger database refused access: %s", _first_line(exc))
                        raise AccessDenied(_first_line(exc), write=write) from exc
                    unreachable = isinstance(exc, OperationalError) and not _statement_refused(exc)
                    if unreachable or exc.connection_invalidated:
                        _log.warning("ledger database unavailable", exc_info=True)
                        if committing:
                            raise CommitUnknown(ErrorCode.DATABASE_UNAVAILABLE, _UNKNOWN) from exc
                        raise LedgerError(ErrorCode.DATABASE_UNAVAILABLE, _UNAVAILABLE) from exc
                    raise
                if not wait:
                    raise WouldWait from exc
                if attempt == _MAX_ATTEMPTS or time.monotonic() > deadline:
                    _log.warning("ledger transaction still contended after %d attempts", attempt, exc_info=True)
                    raise LedgerError(ErrorCode.DATABASE_UNAVAILABLE, _BUSY) from exc
                _log.debug("retrying contended ledger transaction (attempt %d)", attempt)
            except PoolTimeoutError as exc:
                raise LedgerError(ErrorCode.DATABASE_UNAVAILABLE, _BUSY) from exc
            except Exception:
                if not wait:
                    self._release_prompt_writer()
                raise
            delay = min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2**attempt)
            time.sleep(random.uniform(0, delay))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _prompt_failed(self, exc: DBAPIError, stale: bool) -> None:
        """Work that must not wait failed for a reason other than contention: on SQLite replace its
        connection; on PostgreSQL, if the connection or the server failed (not, say, a constraint),
        rest the loop's connection (an invalidated one is replaced anyway), unless it was found `stale`:
        closed while it sat idle, it is reopened at once."""
        if self._loop is None:
            self._prompt_writer = _discarded(self._prompt_writer)
        elif isinstance(exc, OperationalError) or exc.connection_invalidated:
            self._loop.failed(rest=not stale)

    def _lost(self, handle: PoolProxiedConnection, exc: DBAPIError) -> None:
        """A connection was lost: the pool's connections opened before it are likely gone too, and are replaced
        as they are next checked out. SQLAlchemy does this for the statements it runs itself; `Statement`'s, and
        the loop connection's (not of this pool), follow the same rule. Its API for it is private."""
        self._engine.pool._invalidate(handle, exc, _checkin=False)

    def _release_prompt_writer(self) -> None:
        """SQLite: discard the prompt writer if a failure left its transaction open. SQLAlchemy counts a transaction
        ended even when its COMMIT raised, and this connection never goes back to a pool that would roll it back,
        so it would hold the file's write lock for good (a driver's error discards it in `_prompt_failed`)."""
        writer = self._prompt_writer
        if writer is not None and not writer.invalidated:
            driver = writer.connection.driver_connection  # sqlite3's own connection
            if driver is not None and driver.in_transaction:
                self._prompt_writer = _discarded(writer)

    def _connection(self, wait: bool) -> AbstractContextManager[Connection]:
        """A pooled connection; for work that must not wait, the loop's (PostgreSQL) or the long-lived
        prompt writer (SQLite), set up here, under the write gate the caller took first."""
        if wait:
            return self._engine.connect()  # closed (back to the pool) on exit
        if self._loop is not None:
            return _Borrowed(self._loop)
        if self._prompt_writer is None or self._prompt_writer.invalidated:  # a reconnect would lose busy_timeout 0
            self._prompt_writer = _discarded(self._prompt_writer) or self._engine.connect()
            _SQLITE_NO_WAITING.run(self._prompt_writer)
        return nullcontext(self._prompt_writer)

    def _turn(self, write: bool, wait: bool) -> AbstractContextManager[None]:
        """This process's turn to write on SQLite (one writer at a time); nothing to take otherwise."""
        return self._turns[wait] if write else _AS_IS


class _Turn:
    """The write gate, taken on entry (unless `wait`, within `_PROMPT_TURN_WAIT_S`, else `WouldWait`).
    A class, not a generator: every write transaction enters one, and a generator's machinery cost more."""

    __slots__ = ("_gate", "_wait")

    def __init__(self, gate: threading.Lock, *, wait: bool) -> None:
        self._gate = gate
        self._wait = wait

    def __enter__(self) -> None:
        if not self._gate.acquire(timeout=-1 if self._wait else _PROMPT_TURN_WAIT_S):
            raise WouldWait

    def __exit__(self, *exc_info: object) -> None:
        self._gate.release()


class _Borrowed:
    """The loop's connection for one unit of work (`LoopConnection.take`), or `WouldWait` while it is not ready.
    A class, as `_Turn`."""

    __slots__ = ("_loop",)

    def __init__(self, loop: LoopConnection) -> None:
        self._loop = loop

    def __enter__(self) -> Connection:
        conn = self._loop.take()
        if conn is None:
            raise WouldWait
        return conn

    def __exit__(self, *exc_info: object) -> None:
        self._loop.give_back()


class _Unit:
    """One attempt of a PostgreSQL transaction on its connection: the pool's handle on it, whether it was open
    before the attempt began, and the round trips the attempt began on it."""

    __slots__ = ("handle", "reused", "trips")

    def __init__(self, conn: Connection, began: float) -> None:
        self.handle = conn.connection
        self.reused = conn.info.get(_OPENED, began) < began
        self.trips: RoundTrips = counted(conn)

    def found_closed(self, exc: DBAPIError) -> bool:
        """Whether `exc` says the connection was closed before the attempt (while it sat idle, between
        transactions): lost on the first round trip of a connection that served before, not by a wait that
        timed out (`Unanswered`). A connection opened for the attempt and lost at once is a failure of now."""
        return _closed_by_server(exc) and self.reused and self.trips.begun <= 1


def _unanswered(exc: DBAPIError) -> bool:
    """Whether the loop's connection gave up waiting for the server (`Unanswered`): slow or silent, it closed
    itself, which rolls back whatever the work had sent."""
    return isinstance(exc.orig, Unanswered)


def _closed_by_server(exc: DBAPIError) -> bool:
    """Whether `exc` lost its connection other than by a wait that timed out (`Unanswered`: the loop's connection
    closed itself, the server slow or silent, the pool's connections not known to be gone)."""
    return exc.connection_invalidated and not _unanswered(exc)


_OPENED = "bankgate.opened"
"""The pool entry's `info` key of when its connection was opened (`time.monotonic`)."""


def _stamp_opened(_driver: object, entry: ConnectionPoolEntry) -> None:
    """`connect` listener: note when the connection was opened (`_Unit.reused`)."""
    entry.info[_OPENED] = time.monotonic()


_AS_IS: AbstractContextManager[None] = nullcontext()
"""A context that does nothing (no turn to take, nothing to relax), shared: it keeps no state."""


def _sqlite_read(conn: Connection, work: Callable[[Connection], T], snapshot: bool) -> T:
    """A SQLite read on a long-lived connection (`Database.read`), held by the caller: each statement its own
    WAL snapshot, or one (``snapshot``: BEGIN DEFERRED)."""
    if snapshot:
        _SQLITE_BEGIN[False].run(conn)
    try:
        return work(conn)
    finally:
        if snapshot:
            _SQLITE_END_READ.run(conn)
        if conn.in_transaction():  # `work` used SQLAlchemy's own execute, which begins implicitly
            conn.rollback()


def _postgres_read(conn: Connection, work: Callable[[Connection], T], snapshot: bool, *, kept: bool) -> T:
    """A PostgreSQL read: in autocommit, or one REPEATABLE READ snapshot. A ``kept`` connection (the
    loop's) ends here what SQLAlchemy began (a pooled one, when the pool takes it back)."""
    isolation = psycopg.IsolationLevel.REPEATABLE_READ if snapshot else None
    with driver_mode(conn, autocommit=not snapshot, isolation=isolation), reading_ahead(conn):
        try:
            if not snapshot:
                return work(conn)
            with conn.begin():
                return work(conn)
        finally:
            if kept and not conn.invalidated and conn.in_transaction():
                conn.rollback()  # `work` used SQLAlchemy's own execute, which begins implicitly


def _check_ledger_schema(conn: Connection, url: str) -> None:
    """Refuse a search path that finds the ledger in one schema but would create tables in another.

    PostgreSQL creates in `current_schema()`, the first schema of the path that exists (another
    database user's `$user` schema, say), while it finds tables anywhere on the path: migrations
    would build a second, empty ledger there, and locks keyed by the schema (`storage.locks`)
    would not be this ledger's."""
    current, found = conn.execute(_LEDGER_SCHEMA).one()
    if found != current:
        raise LedgerNotOpened(
            f"{redacted_url(url)} finds the bankgate ledger in schema {found!r} but would create tables in "
            f"{current!r}, the first existing schema of its search_path; put {found!r} first "
            f"(e.g. ?options=-csearch_path%3D{found})"
        )


def _discarded(conn: Connection | None) -> Connection | None:
    """Close a long-lived connection for good; what replaces it: none, until one is next needed."""
    if conn is not None:
        conn.invalidate()
        conn.close()
    return None


class _SqliteTransaction:
    """A SQLite transaction of `Database._transact`: BEGIN on entry (IMMEDIATE to write, DEFERRED for one read
    snapshot; none for reads each on their own), COMMIT on a clean exit, else ROLLBACK. What `conn.begin()` did
    around it (the driver in autocommit, SQLAlchemy's BEGIN does nothing; its COMMIT is the driver's), without
    SQLAlchemy's transaction machinery: some 19 calls a transaction. `work` that ran SQLAlchemy's own execute
    began SQLAlchemy's transaction on the same one: SQLAlchemy ends it. A class, as `_Turn`."""

    __slots__ = ("_begin", "_conn")

    def __init__(self, conn: Connection, *, write: bool, snapshot: bool) -> None:
        self._conn = conn
        self._begin = _SQLITE_BEGIN[write] if write or snapshot else None

    def __enter__(self) -> None:
        if self._begin is not None:
            self._begin.run(self._conn)

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn = self._conn
        if exc_type is None:
            try:
                if conn.in_transaction():  # `work` used SQLAlchemy's execute, which began SQLAlchemy's transaction
                    conn.commit()
                elif self._begin is not None:
                    _SQLITE_COMMIT.run(conn)
                return
            except BaseException:
                self._roll_back()
                raise
        self._roll_back()

    def _roll_back(self) -> None:
        """End what is left of the transaction (`work` or its COMMIT failed): SQLAlchemy's, which counts its own
        ended even when its COMMIT raised, and the driver's, whose write lock would outlive it. A connection
        that cannot roll back is discarded (the exception being raised says what failed)."""
        conn = self._conn
        try:
            if conn.get_transaction() is not None:  # even one no longer active (its COMMIT raised)
                conn.rollback()  # also what lets a connection SQLAlchemy invalidated meanwhile be used again
            if conn.invalidated:  # its driver connection is closed, and with it what it held
                return
            driver = conn.connection.driver_connection
            if driver is not None and driver.in_transaction:  # type: ignore[attr-defined]  # sqlite3's own
                _SQLITE_END_READ.run(conn)
        except Exception:  # never in place of the exception being raised
            if not conn.invalidated:
                conn.invalidate()


def _relaxed(conn: Connection, relaxed: bool) -> AbstractContextManager[None]:
    """SQLite's ``synchronous`` for one transaction (it cannot change inside one), then back to FULL."""
    return _RelaxedCommit(conn) if relaxed else _AS_IS


class _RelaxedCommit:
    """``synchronous = NORMAL`` on entry, FULL again on exit. A class, not a generator, as `_Turn`: every
    question's transaction enters one. A connection invalidated meanwhile is left closed: the one that replaces
    it is set up afresh (FULL), and the prompt writer's by `Database._connection` (its busy timeout of 0)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        _SQLITE_RELAXED.run(self._conn)

    def __exit__(self, *exc_info: object) -> None:
        if self._conn.invalidated:  # closed, with its setting; running here would reconnect it (`_connection`)
            return
        try:
            _SQLITE_DURABLE.run(self._conn)
        except DBAPIError:
            self._conn.invalidate()  # never hand a connection that commits without fsync back to the pool


def _is_transient(exc: DBAPIError) -> bool:
    """Lock contention, serialization failure, deadlock or lock timeout: worth a retry."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRYABLE_SQLSTATES
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    return sqlite_code is not None and sqlite_code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _statement_refused(exc: DBAPIError) -> bool:
    """SQLite's SQLITE_ERROR, which its driver raises as an OperationalError: the statement does not fit the
    database (a table or column gone), as PostgreSQL's ProgrammingError says; not a database out of reach."""
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    return sqlite_code is not None and sqlite_code & 0xFF == _SQLITE_ERROR


def refused_by_schema(exc: DBAPIError) -> bool:
    """Whether the database refused the statement itself (a table or index missing, or there already; rows a
    constraint refuses), not its connection, contention (a deadlock), a permission or its resources, which
    `Database.run` retries or reports as such."""
    if exc.connection_invalidated or _denied(exc):
        return False
    return not isinstance(exc, OperationalError) or _statement_refused(exc)


def _denied(exc: DBAPIError) -> bool:
    """A permission the database refused: no retry helps."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _DENIED_SQLSTATES
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    return sqlite_code is not None and sqlite_code & 0xFF in _SQLITE_DENIED


def _unreachable(url: URL, exc: OperationalError) -> str:
    """One line: which server could not be reached, the driver's reason, and what to check."""
    if url.get_backend_name() == "sqlite":
        return f"cannot open the SQLite ledger {url.database}: {_first_line(exc)}; check the path and its permissions"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    reason = _first_line(exc)
    hint = "check that PostgreSQL runs there and accepts TCP connections, and the host and port in --db"
    if "database" in reason and "does not exist" in reason:
        hint = "create the database (createdb) or fix its name in --db"
    elif "authentication" in reason or "password" in reason or "role" in reason:  # role: an unknown user
        hint = "check the user and password in --db (or PGPASSWORD / ~/.pgpass)"
    return f"cannot reach PostgreSQL at {where} (database {url.database!r}): {reason}; {hint}"


def _unusable_file(url: URL, exc: DatabaseError) -> str | None:
    """One line naming a SQLite file that holds no database, or a damaged one, and SQLite's reason; None for
    another error."""
    code = getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_NOTADB:
        return f"{url.database} is not a SQLite database ({_first_line(exc)}); check the path in --db"
    if code == _SQLITE_CORRUPT:
        return f"{url.database} is a damaged SQLite database ({_first_line(exc)}); restore the ledger from a backup"
    return None


def _first_line(exc: DBAPIError) -> str:
    """The driver's own reason, without the 'connection to server at … failed:' preamble."""
    message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    match = re.search(r"port \d+ failed: (.*)", message)
    return (match.group(1) if match else message.removeprefix("connection failed: ")).strip()


def _create_engine(url: str, pool_size: int, *, create: bool) -> Engine:
    engine_url = _engine_url(url, create=create)
    if engine_url.get_backend_name() == "sqlite":
        engine = create_engine(
            engine_url,
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        return engine
    engine = create_engine(
        engine_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        isolation_level="READ COMMITTED",
        connect_args=_POSTGRES_CONNECT_ARGS,
    )
    event.listen(engine, "do_connect", _driver_params)
    return engine


def _driver_params(_dialect: object, _record: object, _cargs: object, cparams: dict[str, Any]) -> None:
    """`do_connect` listener: the URL's `prepare_threshold` as psycopg takes it (`storage.prepared`)."""
    prepared.for_driver(cparams)


_POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 5,
    # A server or network that goes silent on an open connection must fail a call within
    # seconds, not after the kernel's two-hour defaults: unacknowledged sends give up after
    # 5 s, and idle connections are probed so a dead peer is noticed before it is used.
    "tcp_user_timeout": 5_000,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
"""What starts a URL (two characters at least: `C:` starts a Windows path)."""
_URL_FORMS = "use sqlite:///path or postgresql://user@host/db"


def _engine_url(url: str, *, create: bool) -> URL:
    """Normalise the accepted URL forms; refuse in-memory SQLite, a SQLite URL with a query, unknown schemes, a URL
    missing its slashes (a relative file whose name has a colon is written ./name), and (unless creating) a SQLite
    file that does not exist, before the driver would create it."""
    as_path = "://" not in url
    if as_path and _SCHEME.match(url):  # `sqlite:/x.db`: a URL missing its slashes, not a folder named `sqlite:`
        raise LedgerNotOpened(f"the database URL is malformed (no '//' after its scheme); {_URL_FORMS}")
    try:
        parsed = URL.create("sqlite", database=str(Path(url).expanduser().resolve())) if as_path else make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise LedgerNotOpened(f"the database URL is malformed; {_URL_FORMS}") from exc
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if prepared.KEY in parsed.query:
            try:
                prepared.threshold(parsed.query[prepared.KEY])
            except ValueError as exc:
                raise LedgerNotOpened(f"the database URL's {exc}") from exc
        return parsed.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise LedgerNotOpened(
            f"unsupported database URL scheme {parsed.drivername!r}; use sqlite:///path or postgresql://…"
        )
    if parsed.host:
        raise LedgerNotOpened(
            "a SQLite URL takes three slashes: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if not parsed.database or parsed.database == ":memory:":
        raise LedgerNotOpened("the ledger needs a file-backed SQLite database, not an in-memory one")
    query = "" if as_path else urlsplit(url).query  # the URL's: a key without a value is not in `parsed.query`
    if query:  # the driver ignored what it does not take (`mode=ro`), or failed once the file was made
        keys = sorted({key for key, _ in parse_qsl(query, keep_blank_values=True)})
        raise LedgerNotOpened(
            f"a SQLite URL takes no query (this one has {', '.join(keys)}): bankgate sets SQLite's options itself; "
            "drop it (a '?' in the file's name is written %3F)"
        )
    file = Path(parsed.database).expanduser()
    if not create and not file.exists():
        raise LedgerNotOpened(
            f"no ledger at {redacted_url(url)} ({file} does not exist); create one with "
            "`bankgate-mcp admin init --db URL` (add --seed-demo for demo accounts)"
        )
    with suppress(OSError):  # a folder that cannot be made: SQLite says so, naming the file (`_unreachable`)
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if create:
        _create_private(file)
    return parsed.set(drivername="sqlite+pysqlite", database=str(file))  # `~` expanded, as the file was made


def _create_private(file: Path) -> None:
    """A new ledger file readable by its owner only, whatever the umask (the bank's balances, owners and
    memos): created empty (SQLite's empty database) before SQLite would create it as the umask allows;
    its WAL and shared-memory files take its mode. One that exists is left alone; one that cannot be made
    is SQLite's to report, naming the file (`_unreachable`)."""
    with suppress(OSError):
        os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count > 1 else ''}"


def _looking(engine: Engine) -> Engine:
    """The engine to look at a database through before it is known to hold a ledger: on SQLite one of its own,
    without `_configure_sqlite_connection`, whose switch to WAL journaling rewrites the file's header (and puts
    `-wal` and `-shm` files beside it): another application's database, refused, must be left as it was."""
    if engine.dialect.name != "sqlite":
        return engine
    return create_engine(engine.url, poolclass=NullPool, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000})


def _configure_sqlite_connection(dbapi_connection: Any, _record: object) -> None:
    # The driver must not issue its own BEGINs; Database._transact does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the file in WAL mode (a persistent setting, so after the first open a no-op).

    The switch needs the file to itself, and SQLite reports another opener's lock at once
    instead of calling the busy handler, so two processes opening a new ledger together would
    see "database is locked": the switch is retried for as long as ``busy_timeout`` would wait.
    """
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (_SQLITE_BUSY, _SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
        else:
            if mode == "wal":
                return
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"the ledger file stays in {mode} journal mode; WAL is required")
        time.sleep(random.uniform(0.001, 0.01))
